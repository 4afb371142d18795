% rebase("base.tpl", title=bot.name + " · FAQs and intents")
% include("bot_nav.tpl")
<h1>FAQs</h1>
<p class="hint">An FAQ answers a question asked in about these words before the bot searches its documents.</p>
% if not faqs:
<p class="empty">No FAQs yet. Add the questions visitors ask most below.</p>
% else:
<ul class="faqs">
% for faq in faqs:
  <li class="card" id="faq-{{faq["id"]}}">
    <form data-api="/api/faqs/{{faq["id"]}}" data-method="PATCH" data-then="reload">
      <label for="faq-q-{{faq["id"]}}">Question</label>
      <input id="faq-q-{{faq["id"]}}" name="question" value="{{faq["question"]}}" required maxlength="1000">
      <label for="faq-a-{{faq["id"]}}">Answer</label>
      <textarea id="faq-a-{{faq["id"]}}" name="answer" rows="3" required maxlength="8000">{{faq["answer"]}}</textarea>
      <p class="form-error error" role="alert" hidden></p>
      <button type="submit">Save</button>
      <button type="button" class="danger" data-api="/api/faqs/{{faq["id"]}}" data-method="DELETE" data-confirm="Delete this FAQ?" data-then="reload">Delete</button>
    </form>
  </li>
% end
</ul>
% end
<section class="card">
<h2>Add an FAQ</h2>
<form data-api="/api/chatbots/{{bot.id}}/faqs" data-method="POST" data-then="reload" id="new-faq">
  <label for="faq-question">Question</label>
  <input id="faq-question" name="question" required maxlength="1000">
  <label for="faq-answer">Answer</label>
  <textarea id="faq-answer" name="answer" rows="3" required maxlength="8000"></textarea>
  <p class="form-error error" role="alert" hidden></p>
  <button type="submit">Add FAQ</button>
</form>
</section>

<h1>Custom intents</h1>
<p class="hint">An intent recognises a kind of message from example phrases and answers with one of its responses.</p>
% if not intents:
<p class="empty">No custom intents. The built-in ones (greetings, thanks, goodbye…) still work; add your own below.</p>
% else:
<div class="scroll">
<table>
  <thead><tr><th scope="col">Name</th><th scope="col">Examples</th><th scope="col">Responses</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
  <tbody>
% for intent in intents:
  <tr id="intent-{{intent["id"]}}">
    <td><code>{{intent["name"]}}</code></td>
    <td><ul>
    % for example in intent["examples"]:
      <li>{{example}}</li>
    % end
    </ul></td>
    <td><ul>
    % for reply in intent["responses"]:
      <li>{{reply}}</li>
    % end
    </ul></td>
    <td><button type="button" class="danger" data-api="/api/intents/{{intent["id"]}}" data-method="DELETE" data-confirm="Delete the intent {{intent["name"]}}?" data-then="reload">Delete</button></td>
  </tr>
% end
  </tbody>
</table>
</div>
% end
<section class="card">
<h2>Add an intent</h2>
<form data-api="/api/chatbots/{{bot.id}}/intents" data-method="POST" data-then="reload" id="new-intent">
  <label for="intent-name">Name</label>
  <input id="intent-name" name="name" required maxlength="64" placeholder="opening_hours">
  <label for="intent-examples">Example phrases <span class="hint">(one per line)</span></label>
  <textarea id="intent-examples" name="examples" rows="3" required data-type="lines"></textarea>
  <label for="intent-responses">Responses <span class="hint">(one per line; one is picked)</span></label>
  <textarea id="intent-responses" name="responses" rows="2" required data-type="lines"></textarea>
  <p class="form-error error" role="alert" hidden></p>
  <button type="submit">Add intent</button>
</form>
</section>
