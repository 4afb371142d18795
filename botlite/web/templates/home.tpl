% rebase("base.tpl", title="Chatbots")
<h1>Chatbots</h1>
% if not bots:
<p>No chatbots yet. Create one with <code>POST /api/chatbots</code>.</p>
% else:
<table>
  <thead><tr><th scope="col">Name</th><th scope="col">Id</th><th scope="col">Description</th></tr></thead>
  <tbody>
  % for bot in bots:
    <tr><td>{{bot.name}}</td><td><code>{{bot.id}}</code></td><td>{{bot.description}}</td></tr>
  % end
  </tbody>
</table>
% end
<form method="post" action="/logout"><button type="submit">Log out</button></form>
