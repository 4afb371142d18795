% rebase("base.tpl", title=bot.name + " · playground")
% include("bot_nav.tpl")
<h1>Playground</h1>
<p class="hint">Talk to the bot the way visitors do. Each answer shows the intent it
matched, where the answer came from, the confidence and the cited sources.
Playground messages are logged as a conversation but not rate limited.</p>
<section class="chat card" id="playground" data-bot="{{bot.id}}">
  <ol class="log" aria-live="polite" aria-label="Conversation">
% if bot.greeting:
    <li class="msg bot"><p>{{bot.greeting}}</p></li>
% end
  </ol>
  <p class="empty log-empty"{{!" hidden" if bot.greeting else ""}}>Ask something the bot's knowledge should answer, e.g. a question about an uploaded document.</p>
  <form class="ask">
    <label for="message" class="visually-hidden">Message</label>
    <input id="message" name="message" autocomplete="off" required maxlength="4000" placeholder="Type a question…">
    <button type="submit">Send</button>
  </form>
  <p class="form-error error" role="alert" hidden></p>
</section>
