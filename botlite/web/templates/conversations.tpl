% rebase("base.tpl", title=bot.name + " · conversations")
% include("bot_nav.tpl")
<h1>Conversations</h1>
% if not conversations:
<p class="empty">No conversations yet. Try the <a href="/bots/{{bot.id}}/playground">playground</a> or embed the <a href="/bots/{{bot.id}}/settings">widget</a> on your site.</p>
% else:
<div class="scroll">
<table>
  <thead><tr><th scope="col">Last message (UTC)</th><th scope="col">Session</th><th scope="col">Messages</th><th scope="col">Started (UTC)</th></tr></thead>
  <tbody>
% for c in conversations:
  <tr><td><a href="/bots/{{bot.id}}/conversations/{{c["id"]}}">{{c["last_message_at"]}}</a></td>
      <td><code>{{c["session_id"]}}</code></td><td>{{c["message_count"]}}</td><td>{{c["started_at"]}}</td></tr>
% end
  </tbody>
</table>
</div>
% end
