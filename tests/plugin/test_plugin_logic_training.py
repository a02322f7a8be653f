"""Plain tests of the training texts (no QGIS needed): held-back first rate, before/after table, re-index name."""
from harma_search.logic.status import JobStatus
from harma_search.logic.training import MIN_RATE_SECONDS, TrainingWatch, reindex_target, report_table


def test_no_images_per_second_in_the_first_steps():
    now = [100.0]
    watch = TrainingWatch(clock=lambda: now[0])
    assert "caching" in watch.describe(JobStatus("j", "running"))
    first = watch.describe(JobStatus("j", "running", done=1, total=40, tiles_per_s=9000.0, eta_s=0.1))
    assert first == "running: step 1/40 · measuring speed"
    now[0] += MIN_RATE_SECONDS
    later = watch.describe(JobStatus("j", "running", done=12, total=40, tiles_per_s=24.0, eta_s=70))
    assert later == "running: step 12/40 · 24.0 images/s · ETA 1:10"
    assert watch.describe(JobStatus("j", "cancelled", done=12, total=40)).startswith("Training cancelled; run it")


def test_report_is_a_before_after_table():
    result = {"init_val": {"polygons": {"p10": 40.0, "acc1": 25.0, "score": 32.5, "n_images": 8, "n_classes": 4}},
              "best_val": {"polygons": {"p10": 60.0, "acc1": 50.0, "score": 55.0, "n_images": 8, "n_classes": 4}},
              "best_epoch": 2, "registered": True, "model_identity": "m:1"}
    lines = report_table(result).splitlines()
    assert lines[0] == "Validation 'polygons' (8 val tiles, 4 classes): before → after"
    assert lines[1].split() == ["class", "P@10", "40.0", "→", "60.0", "(+20.0)"]
    assert lines[3].split() == ["val", "score", "32.5", "→", "55.0", "(+22.5)"]
    assert lines[-1] == "The server registered the run as model m:1"
    assert "–" in report_table({"init_val": {"polygons": {"score": 1.0}}, "best_val": None})


def test_reindex_target_is_a_valid_collection_name():
    assert reindex_target("scenes", "/store/runs/qgis1") == "scenes-qgis1"
    assert reindex_target("a", "C:\\runs\\my run!") == "a-my-run"
