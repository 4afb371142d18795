"""JSON API routes. A route parses, calls one function, renders."""
from __future__ import annotations

from bottle import Bottle, HTTPResponse, request, response

from botlite import (analytics, chatbots, health, ingest, notifications, operations,
                     retrieval, schedule, task_control, widget)
from botlite.chat import admin as chat_admin
from botlite.chat import service as chat
from botlite.errors import BadRequest, PayloadTooLarge
from botlite.knowledge import sources
from botlite.auth import token_matches
from botlite.web.app import (bearer_token, client_address, current_caller, json_body,
                             json_response)

MULTIPART_OVERHEAD = 64 * 1024


def install(web: Bottle, app) -> None:
    limiter = widget.RateLimiter()

    @web.get("/healthz", public=True, db=False)
    def healthz():
        # The admin bearer token shows the last health_check in full.
        healthy, report = health.check(app, detail=token_matches(bearer_token(), app.token))
        return json_response(report, 200 if healthy else 503)

    @web.get("/api/chatbots")
    def list_chatbots():
        return {"chatbots": [bot.to_dict() for bot in chatbots.list_bots()]}

    @web.post("/api/chatbots")
    def create_chatbot():
        bot = chatbots.create_bot(json_body(), app.settings.allow_private_urls)
        response.status = 201
        return bot.to_dict()

    @web.get("/api/chatbots/<bot_id>")
    def get_chatbot(bot_id):
        return chatbots.get_bot(bot_id).to_dict()

    @web.route("/api/chatbots/<bot_id>", method="PATCH")
    def patch_chatbot(bot_id):
        return chatbots.update_bot(bot_id, json_body(),
                                   app.settings.allow_private_urls).to_dict()

    @web.delete("/api/chatbots/<bot_id>")
    def delete_chatbot(bot_id):
        return ingest.delete_bot(app, bot_id).to_dict()

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

    # -- the periodic schedule -------------------------------------------------------

    @web.get("/api/schedule")
    def list_schedule():
        return {"jobs": schedule.list_jobs(app.runner)}

    @web.post("/api/schedule")
    def create_schedule_job():
        response.status = 201
        return schedule.create_job(app.runner, json_body())

    @web.get("/api/schedule/preview")
    def preview_crontab():
        return schedule.preview(request.query.get("crontab"), request.query.get("count"))

    @web.get("/api/schedule/<name>")
    def get_schedule_job(name):
        return dict(schedule.get_job(app.runner, name),
                    runs=schedule.runs(name, request.query.get("limit")))

    @web.route("/api/schedule/<name>", method="PATCH")
    def patch_schedule_job(name):
        return schedule.update_job(app.runner, name, json_body())

    @web.delete("/api/schedule/<name>")
    def delete_schedule_job(name):
        return schedule.delete_job(app.runner, name)

    @web.get("/api/vectors")
    def vector_status():
        return retrieval.status()

    @web.post("/api/vectors/rebuild")
    def rebuild_vectors():
        response.status = 202
        return retrieval.rebuild(app, json_body() if request.content_length else {})

    @web.post("/api/schedule/<name>/run")
    def run_schedule_job(name):
        response.status = 202
        return schedule.run_now(app.runner, name)

    @web.get("/api/chatbots/<bot_id>/sources")
    def list_sources(bot_id):
        chatbots.get_bot(bot_id)
        return {"sources": ingest.source_views(list(sources.list_sources(bot_id)))}

    @web.post("/api/chatbots/<bot_id>/sources")
    def add_source(bot_id):
        content_type = (request.content_type or "").split(";")[0].strip().lower()
        if content_type == "multipart/form-data":
            limit = app.settings.max_upload_mb * 1024 * 1024
            if request.content_length > limit + MULTIPART_OVERHEAD:
                raise PayloadTooLarge("the file is larger than the %d MB upload limit"
                                      % app.settings.max_upload_mb)
            try:
                upload = request.files.get("file")
            except ValueError:  # bottle refuses a part header with control characters
                raise BadRequest("a part header of the upload contains control "
                                 "characters (a NUL in the file name?); rename the file",
                                 code="invalid_filename") from None
            if upload is None:
                raise BadRequest("send the file in a multipart field named 'file'",
                                 code="invalid_field")
            source, duplicate = ingest.add_file(app, bot_id, upload.raw_filename, upload.file)
        else:
            source, duplicate = ingest.add_website(app, bot_id, json_body())
        status, body = ingest.accepted(source, duplicate)
        return json_response(body, status)

    @web.get("/api/sources/<source_id>")
    def get_source(source_id):
        return ingest.source_views([sources.get_source(source_id)])[0]

    @web.delete("/api/sources/<source_id>")
    def delete_source(source_id):
        return ingest.delete_source(app, source_id).to_dict()

    @web.post("/api/sources/<source_id>/reprocess")
    def reprocess_source(source_id):
        return json_response(ingest.reprocess(app, source_id).to_dict(), 202)

    @web.get("/api/notifications")
    def list_notifications():
        query = request.query
        return {"notifications": notifications.list_for(query.get("user_id"),
                                                        query.get("limit"),
                                                        query.get("unread"))}

    @web.post("/api/notifications/<notification_id>/read")
    def read_notification(notification_id):
        return notifications.mark_read(notification_id)

    @web.post("/api/notifications/read-all")
    def read_all_notifications():
        return notifications.mark_all_read(json_body())

    # -- analytics and reports -------------------------------------------------------

    @web.get("/api/chatbots/<bot_id>/analytics")
    def bot_analytics(bot_id):
        return analytics.report_for_request(bot_id, request.query)

    @web.post("/api/messages/<message_id>/feedback", public=True)
    def message_feedback(message_id):
        widget.feedback_gate(client_address(), limiter)
        return json_response(analytics.feedback(app, message_id, json_body()), 202)

    @web.get("/api/reports/system")
    def system_report():
        return operations.system_report_for_request(app.runner, request.query)

    # -- chat (public; CORS for the bot's allowed domains; rate limited) -------------

    @web.post("/chatbot/message/", public=True, cors=True)
    def chatbot_message():
        return widget.chat(app, json_body(), None, current_caller(), limiter)

    @web.post("/api/chatbots/<bot_id>/chat", public=True, cors=True)
    def chat_with_bot(bot_id):
        return widget.chat(app, json_body(), bot_id, current_caller(), limiter)

    @web.route("/chatbot/message/", method="OPTIONS", public=True, cors=True)
    def chatbot_message_preflight():
        widget.preflight(None, current_caller())
        return HTTPResponse(status=204)

    @web.route("/api/chatbots/<bot_id>/chat", method="OPTIONS", public=True, cors=True)
    def chat_with_bot_preflight(bot_id):
        widget.preflight(bot_id, current_caller())
        return HTTPResponse(status=204)

    @web.get("/api/chatbots/<bot_id>/widget", public=True, cors=True)
    def widget_info(bot_id):
        return widget.public_info(bot_id, current_caller())

    @web.get("/api/chatbots/<bot_id>/conversations")
    def list_conversations(bot_id):
        return {"conversations": chat.conversations(app, bot_id, request.query.get("limit"))}

    @web.get("/api/conversations/<conversation_id>")
    def get_conversation(conversation_id):
        return chat.conversation(app, conversation_id)

    # -- FAQs and custom intents ----------------------------------------------------

    @web.get("/api/chatbots/<bot_id>/faqs")
    def list_faqs(bot_id):
        return {"faqs": chat_admin.list_faqs(bot_id)}

    @web.post("/api/chatbots/<bot_id>/faqs")
    def add_faq(bot_id):
        response.status = 201
        return chat_admin.add_faq(bot_id, json_body())

    @web.route("/api/faqs/<faq_id>", method="PATCH")
    def update_faq(faq_id):
        return chat_admin.update_faq(faq_id, json_body())

    @web.delete("/api/faqs/<faq_id>")
    def delete_faq(faq_id):
        return chat_admin.delete_faq(faq_id)

    @web.get("/api/chatbots/<bot_id>/intents")
    def list_intents(bot_id):
        return {"intents": chat_admin.list_intents(bot_id)}

    @web.post("/api/chatbots/<bot_id>/intents")
    def add_intent(bot_id):
        response.status = 201
        return chat_admin.add_intent(bot_id, json_body())

    @web.delete("/api/intents/<intent_id>")
    def delete_intent(intent_id):
        return chat_admin.delete_intent(intent_id)
