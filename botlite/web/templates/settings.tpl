% import json
% rebase("base.tpl", title=bot.name + " · settings")
% include("bot_nav.tpl")
<h1>Settings</h1>
<form data-api="/api/chatbots/{{bot.id}}" data-method="PATCH" data-then="reload" class="card" id="bot-settings">
  <label for="bot-name">Name</label>
  <input id="bot-name" name="name" value="{{bot.name}}" required maxlength="200">
  <label for="bot-description">Description</label>
  <input id="bot-description" name="description" value="{{bot.description}}" maxlength="2000">
  <label for="bot-greeting">Greeting <span class="hint">(the widget's first message)</span></label>
  <textarea id="bot-greeting" name="greeting" rows="2" maxlength="2000">{{bot.greeting}}</textarea>
  <label for="bot-fallback">Fallback message <span class="hint">(when the bot finds no answer)</span></label>
  <textarea id="bot-fallback" name="fallback_message" rows="2" maxlength="2000">{{bot.fallback_message}}</textarea>
  <label for="bot-domains">Allowed widget domains <span class="hint">(one per line: <code>example.com</code>, <code>*.example.com</code>, <code>https://example.com:8443</code>)</span></label>
  <textarea id="bot-domains" name="allowed_domains" rows="3" data-type="lines">{{"\n".join(json.loads(bot.allowed_domains or "[]"))}}</textarea>
  <label for="bot-rate">Rate limit <span class="hint">(messages per visitor per minute; 0: no limit)</span></label>
  <input id="bot-rate" name="rate_limit_per_minute" type="number" min="0" max="10000" value="{{bot.rate_limit_per_minute}}" data-type="int" required>
  <p class="form-error error" role="alert" hidden></p>
  <p class="form-ok" role="status" hidden>Saved.</p>
  <button type="submit">Save settings</button>
</form>

<section class="card">
<h2>Embed the widget</h2>
<p>Paste this where the chat bubble should appear on your page (before <code>&lt;/body&gt;</code>).
Your site's domain must be in the allowed domains above.</p>
<pre class="snippet"><code id="embed-snippet">&lt;script src="{{origin}}/widget.js" data-bot="{{bot.id}}"&gt;&lt;/script&gt;</code></pre>
<p class="hint">Optional attributes: <code>data-title</code>, <code>data-position="left"</code>,
<code>data-color="#1d3557"</code>, <code>data-open</code>. See the README's widget section.</p>
</section>

% if bot.id != "default":
<section class="card danger-zone">
<h2>Delete this chatbot</h2>
<p>Deletes its sources, FAQs, intents and conversations. This cannot be undone.</p>
<button type="button" class="danger" data-api="/api/chatbots/{{bot.id}}" data-method="DELETE" data-confirm="Delete the chatbot &quot;{{bot.name}}&quot; and everything in it?" data-then="/">Delete chatbot</button>
</section>
% end
