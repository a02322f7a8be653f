"""Indexing through the dock against the live server: progress, ETA, task manager, and real cancellation."""
from harma_search.tasks import Outcome
from plugin_testing import COLLECTION, GEOTIFF, get_json, wait_task, wait_until


def test_dock_indexes_a_raster_layer_with_progress(indexed, live_server):
    result = indexed["result"]
    assert result.outcome is Outcome.SUCCESS, result.error
    status = result.value
    assert status.state == "done" and status.total > 0 and status.done == status.total
    assert indexed["in_task_manager"]
    assert indexed["progress"] and max(indexed["progress"]) == 100
    assert indexed["bar"] == 100
    assert any(label.startswith(("queued", "running")) and "ETA" in label for label in indexed["labels"])
    assert any(label.startswith("done: ") for label in indexed["labels"])
    # the server now has the collection, and the dock offers it after the automatic status refresh
    assert COLLECTION in get_json(f"{live_server}/api/v1/health")["collections"]
    assert COLLECTION in indexed["collections"]
    assert indexed["buttons"] == (True, False)


def test_cancel_in_the_dock_cancels_the_server_job(indexed, plugin, live_server):
    dock, controller = plugin.dock, plugin.controller
    dock.folder_widget.setFilePath(str(GEOTIFF))  # every GeoTIFF of the folder, small tiles: a long job
    dock.index_collection_edit.setText("cancel-me")
    dock.tile_size_spin.setValue(32)
    dock.index_button.click()
    task = controller.index_task
    ends = []
    task.taskCompleted.connect(lambda: ends.append("completed"))
    task.taskTerminated.connect(lambda: ends.append("terminated"))
    wait_until(lambda: task.job_id or task.result is not None, "the job id")
    assert task.job_id, task.result
    assert dock.cancel_index_button.isEnabled()
    dock.cancel_index_button.click()
    result = wait_task(task)
    dock.folder_widget.setFilePath("")
    assert result.outcome is Outcome.CANCELLED
    wait_until(lambda: ends, "the task's end signal")
    assert ends == ["completed"]  # QGIS says "Task failed" for a terminated task; a cancel is not a failure
    assert "cancelled" in dock.index_label.text().lower()
    job = get_json(f"{live_server}/api/v1/jobs/{task.job_id}")
    assert job["state"] == "cancelled"
    assert job["done"] < job["total"] or job["total"] == 0
    assert dock.index_button.isEnabled()
