% rebase("base.tpl", title="Chatbots")
<h1>Chatbots</h1>
% if not bots:
<p class="empty">No chatbots yet. Create your first one below, then add documents or a website to it.</p>
% else:
<div class="scroll">
<table>
  <thead><tr><th scope="col">Name</th><th scope="col">Id</th><th scope="col">Sources</th><th scope="col">FAQs</th><th scope="col">Conversations</th></tr></thead>
  <tbody>
  % for row in bots:
    <tr>
      <td><a href="/bots/{{row["bot"].id}}">{{row["bot"].name}}</a>
        % if row["bot"].description:
        <div class="hint">{{row["bot"].description}}</div>
        % end
      </td>
      <td><code>{{row["bot"].id}}</code></td>
      <td>{{row["sources"]}}</td>
      <td>{{row["faqs"]}}</td>
      <td>{{row["conversations"]}}</td>
    </tr>
  % end
  </tbody>
</table>
</div>
% end
<section class="card">
<h2>New chatbot</h2>
<form data-api="/api/chatbots" data-method="POST" data-then="/bots/{id}" id="new-bot">
  <label for="new-bot-name">Name</label>
  <input id="new-bot-name" name="name" required maxlength="200">
  <label for="new-bot-description">Description <span class="hint">(optional)</span></label>
  <input id="new-bot-description" name="description" maxlength="2000">
  <label for="new-bot-greeting">Greeting <span class="hint">(optional: the widget shows it first)</span></label>
  <input id="new-bot-greeting" name="greeting" maxlength="2000">
  <p class="form-error error" role="alert" hidden></p>
  <button type="submit">Create chatbot</button>
</form>
</section>
