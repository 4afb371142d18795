<p class="crumbs"><a href="/">Chatbots</a> › <span>{{bot.name}}</span> <code>{{bot.id}}</code></p>
<nav class="tabs" aria-label="Chatbot">
% for key, label, href in (("sources", "Knowledge", ""), ("faqs", "FAQs & intents", "/faqs"), ("playground", "Playground", "/playground"), ("conversations", "Conversations", "/conversations"), ("analytics", "Analytics", "/analytics"), ("settings", "Settings & widget", "/settings")):
  <a href="/bots/{{bot.id}}{{href}}"{{!' aria-current="page"' if tab == key else ""}}>{{label}}</a>
% end
</nav>
