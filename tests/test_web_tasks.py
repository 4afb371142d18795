"""The task API over WSGI, with a real worker runtime where tasks must run."""
import pytest

from conftest import wait_for


def _error(response, status, code):
    assert response.status == status, response.body
    assert response.json["error"]["code"] == code
    return response.json["error"]["message"]


def test_submit_and_follow_a_task_to_success(client, worker):
    submitted = client.post("/api/tasks", {"name": "health_check"})
    assert submitted.status == 202
    task_id = submitted.json["task_id"]
    assert submitted.json["status"] in ("PENDING", "STARTED", "SUCCESS")
    done = wait_for(lambda: (lambda t: t if t["status"] == "SUCCESS" else None)(
        client.get("/api/tasks/" + task_id).json), message="health_check to succeed")
    assert done["name"] == "health_check" and done["queue"] == "default"
    assert done["result"]["status"] == "ok" and done["error"] is None
    assert done["retries"] == 0 and done["progress"] is None
    for key in ("enqueued_at", "started_at", "finished_at"):
        assert done[key].endswith("Z")
    listed = client.get("/api/tasks?status=SUCCESS&name=health_check&limit=5").json["tasks"]
    assert [t["task_id"] for t in listed] == [task_id]


@pytest.mark.parametrize("body, code, fragment", [
    ({"name": "rm_rf"}, "unknown_task", "unknown task 'rm_rf'"),
    ({}, "invalid_field", "'name' is required"),
    ({"name": "health_check", "args": "x"}, "invalid_field", "'args' must be a JSON list"),
    ({"name": "health_check", "kwargs": [1]}, "invalid_field", "'kwargs' must be a JSON object"),
    ({"name": "health_check", "delay": "soon"}, "invalid_field", "'delay'"),
    ({"name": "health_check", "delay": -1}, "invalid_field", "'delay'"),
    ({"name": "health_check", "eta": 1}, "invalid_field", "unknown field"),
    ({"name": "cleanup_old_data", "args": [1, 2, 3]}, "invalid_field",
     "do not fit task cleanup_old_data: too many positional arguments"),
    ({"name": "cleanup_old_data", "args": ["x"]}, "invalid_field",
     "argument 'days' must be a whole number, not \"x\""),
    ({"name": "cleanup_old_data", "args": [True]}, "invalid_field", "whole number, not true"),
    ({"name": "cleanup_old_data", "kwargs": {"weeks": 2}}, "invalid_field",
     "unexpected keyword argument 'weeks'"),
    ({"name": "backup_data", "args": ["all"]}, "invalid_field",
     "argument 'keep' must be a whole number or null"),
    ({"name": "send_notification", "args": ["ops", "Title"]}, "invalid_field",
     "missing a required argument: 'message'"),
])
def test_bad_task_submissions_are_400(client, body, code, fragment):
    message = _error(client.post("/api/tasks", body), 400, code)
    assert fragment in message
    assert client.get("/api/tasks").json["tasks"] == []


def test_arguments_of_the_types_a_task_takes_are_queued(client):
    for body in ({"name": "cleanup_old_data", "args": [30]},
                 {"name": "cleanup_temp_files", "kwargs": {"max_age_hours": 1.5}},
                 {"name": "cleanup_temp_files", "args": [2]},  # a whole number is a number
                 {"name": "backup_data", "args": [None]},
                 {"name": "send_notification", "args": ["ops", "Title", "Body"]}):
        assert client.post("/api/tasks", body).status == 202, body
    assert len(client.get("/api/tasks").json["tasks"]) == 5


def test_non_json_body_is_400(client):
    _error(client.post("/api/tasks", body=b"name=health_check",
                       headers={"Content-Type": "application/x-www-form-urlencoded"}),
           400, "invalid_json")


def test_unknown_task_id_is_404(client):
    for response in (client.get("/api/tasks/nope"), client.post("/api/tasks/nope/revoke"),
                     client.post("/api/tasks/nope/retry")):
        _error(response, 404, "not_found")


def test_bad_list_filters_are_400(client):
    _error(client.get("/api/tasks?status=LOST"), 400, "invalid_field")
    _error(client.get("/api/tasks?limit=0"), 400, "invalid_field")
    _error(client.get("/api/tasks?limit=ten"), 400, "invalid_field")


def test_revoke_a_delayed_task_then_retry_is_refused_until_it_is_revoked(client):
    task_id = client.post("/api/tasks", {"name": "health_check", "delay": 3600}).json["task_id"]
    assert client.get("/api/queues").json["queues"]["default"]["scheduled"] == 1
    assert client.post("/api/tasks/%s/retry" % task_id).status == 409
    revoked = client.post("/api/tasks/%s/revoke" % task_id)
    assert revoked.status == 200 and revoked.json["status"] == "REVOKED"
    _error(client.post("/api/tasks/%s/revoke" % task_id), 409, "conflict")
    assert client.post("/api/tasks/%s/retry" % task_id).json["status"] == "PENDING"


def test_queues_and_purge(client):
    for _ in range(3):
        client.post("/api/tasks", {"name": "health_check"})
    queues = client.get("/api/queues").json
    assert queues["queues"]["default"] == {"pending": 3, "scheduled": 0, "running": 0}
    assert queues["dead"] == 0
    assert client.post("/api/queues/default/purge").json == {"queue": "default", "purged": 3}
    revoked = client.get("/api/tasks?status=REVOKED").json["tasks"]
    assert len(revoked) == 3 and "purged" in revoked[0]["error"]
    typo = client.post("/api/queues/defualt/purge")  # a typo is not "0 purged"
    assert typo.status == 404 and typo.json["error"]["code"] == "not_found"
    assert "no queue named 'defualt' (queues: default, documents," in typo.json["error"][
        "message"]


def test_task_endpoints_need_the_token(client):
    for method, path in (("GET", "/api/tasks"), ("POST", "/api/tasks"), ("GET", "/api/queues"),
                         ("GET", "/api/tasks/x"), ("POST", "/api/tasks/x/revoke")):
        assert client.request(method, path, auth=False).status == 401
