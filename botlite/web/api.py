"""JSON API routes. A route parses, calls one function, renders."""
from __future__ import annotations

from bottle import Bottle, request, response

from botlite import chatbots, health, task_control
from botlite.web.app import json_body, json_response


def install(web: Bottle, app) -> None:
    @web.get("/healthz", public=True, db=False)
    def healthz():
        healthy, report = health.check(app)
        return json_response(report, 200 if healthy else 503)

    @web.get("/api/chatbots")
    def list_chatbots():
        return {"chatbots": [bot.to_dict() for bot in chatbots.list_bots()]}

    @web.post("/api/chatbots")
    def create_chatbot():
        bot = chatbots.create_bot(json_body())
        response.status = 201
        return bot.to_dict()

    @web.get("/api/chatbots/<bot_id>")
    def get_chatbot(bot_id):
        return chatbots.get_bot(bot_id).to_dict()

    @web.route("/api/chatbots/<bot_id>", method="PATCH")
    def patch_chatbot(bot_id):
        return chatbots.update_bot(bot_id, json_body()).to_dict()

    @web.delete("/api/chatbots/<bot_id>")
    def delete_chatbot(bot_id):
        return chatbots.delete_bot(bot_id).to_dict()

    @web.get("/api/tasks")
    def list_tasks():
        query = request.query
        return {"tasks": task_control.list_tasks(app.runner, query.get("status"),
                                                 query.get("name"), query.get("limit"))}

    @web.post("/api/tasks")
    def submit_task():
        response.status = 202
        return task_control.submit(app.runner, json_body())

    @web.get("/api/tasks/<task_id>")
    def show_task(task_id):
        return task_control.show(app.runner, task_id)

    @web.post("/api/tasks/<task_id>/revoke")
    def revoke_task(task_id):
        return task_control.revoke(app.runner, task_id)

    @web.post("/api/tasks/<task_id>/retry")
    def retry_task(task_id):
        return task_control.retry(app.runner, task_id)

    @web.get("/api/queues")
    def queues():
        return app.runner.queues()

    @web.post("/api/queues/<queue>/purge")
    def purge_queue(queue):
        return task_control.purge(app.runner, queue)
