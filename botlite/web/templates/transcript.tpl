% rebase("base.tpl", title=bot.name + " · conversation")
% include("bot_nav.tpl")
<h1>Conversation <code>{{conversation["session_id"]}}</code></h1>
<p class="hint">Started {{conversation["started_at"]}} · {{conversation["message_count"]}} messages</p>
<ol class="log transcript">
% for m in conversation["messages"]:
  <li class="msg {{m["role"]}}">
    <p>{{m["text"]}}</p>
    % if m["role"] == "bot":
    % include("reply_meta.tpl", m=m)
    % end
    <div class="hint">{{m["created_at"]}}</div>
  </li>
% end
</ol>
