% import json
% rebase("base.tpl", title="Notifications")
<h1>Notifications</h1>
<form method="get" action="/notifications" class="filters">
  <div><label for="unread-only">Show</label>
  <select id="unread-only" name="unread">
    <option value="">all</option>
    <option value="1"{{!" selected" if unread_only else ""}}>unread only</option>
  </select></div>
  <button type="submit">Show</button>
% for user in unread_users:
  <button type="button" data-api="/api/notifications/read-all" data-method="POST" data-body="{{json.dumps({"user_id": user})}}" data-then="reload">Mark all for {{user}} as read</button>
% end
</form>
% if not notifications:
  % if unread_only:
<p class="empty">Nothing unread. <a href="/notifications">Show all notifications</a>.</p>
  % else:
<p class="empty">No notifications yet. You get one when a source is ready or fails, and when background work needs your attention.</p>
  % end
% else:
<p class="hint">{{unread}} unread of the {{len(notifications)}} most recent.</p>
<ul class="inbox">
% for n in notifications:
  <li class="card {{"read" if n["read"] else "unread"}} {{n["notification_type"]}}" id="notification-{{n["id"]}}">
    <p><span class="badge {{n["notification_type"]}}">{{n["notification_type"]}}</span>
      <b>{{n["title"]}}</b> <span class="hint">{{n["created_at"]}} · for {{n["user_id"]}}</span></p>
    <p>{{n["message"]}}</p>
    % if not n["read"]:
    <button type="button" data-api="/api/notifications/{{n["id"]}}/read" data-method="POST" data-then="reload">Mark as read</button>
    % end
  </li>
% end
</ul>
% end
