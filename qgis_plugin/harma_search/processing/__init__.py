"""Processing provider and algorithms of the HarMA Search plugin."""
