/* botlite chat widget.
 *
 *   <script src="http://HOST:PORT/widget.js" data-bot="BOT_ID"></script>
 *
 * Attributes: data-bot (required), data-title, data-position="left"|"right",
 * data-color="#rrggbb", data-open (start opened), data-api (another server base URL).
 * The widget lives in a shadow root, so the page's CSS does not leak in or out. It
 * keeps the visitor's session id in localStorage ("botlite:<bot>:session"), shows
 * the answer's sources as links, and says so kindly when the bot's rate limit is hit.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script) { return; }
  var bot = script.getAttribute("data-bot");
  if (!bot) {
    window.console && console.error("botlite widget: add data-bot=\"BOT_ID\" to the script tag");
    return;
  }
  var base = (script.getAttribute("data-api") || new URL(script.src, document.baseURI).origin)
    .replace(/\/+$/, "");
  var endpoint = base + "/api/chatbots/" + encodeURIComponent(bot);
  var color = script.getAttribute("data-color") || "";
  if (!/^#[0-9a-fA-F]{3,8}$/.test(color)) { color = "#1d3557"; }
  var side = script.getAttribute("data-position") === "left" ? "left" : "right";
  var storeKey = "botlite:" + bot + ":session";

  var CSS = [
    ":host { all: initial; }",
    "* { box-sizing: border-box; font-family: system-ui, sans-serif; }",
    ".bubble { position: fixed; bottom: 20px; SIDE: 20px; width: 56px; height: 56px;",
    "  border-radius: 50%; border: 0; background: COLOR; color: #fff; font-size: 26px;",
    "  cursor: pointer; box-shadow: 0 4px 14px rgba(0,0,0,.25); z-index: 2147483000;",
    "  display: flex; align-items: center; justify-content: center; padding: 0; }",
    ".bubble:focus-visible, button:focus-visible, input:focus-visible { outline: 3px solid #f4a261; outline-offset: 2px; }",
    ".panel { position: fixed; bottom: 88px; SIDE: 20px; width: 360px; max-width: calc(100vw - 24px);",
    "  height: 480px; max-height: calc(100vh - 110px); display: flex; flex-direction: column;",
    "  background: #fff; color: #1d1d1f; border-radius: 12px; overflow: hidden;",
    "  box-shadow: 0 8px 30px rgba(0,0,0,.3); z-index: 2147483000; font-size: 15px; }",
    ".panel[hidden] { display: none; }",
    "header { background: COLOR; color: #fff; padding: 10px 12px; display: flex; align-items: center; }",
    "header h2 { font-size: 16px; margin: 0; flex: 1; }",
    "header button { background: transparent; border: 0; color: #fff; font-size: 20px; cursor: pointer; }",
    "ol.log { list-style: none; margin: 0; padding: 10px; overflow-y: auto; flex: 1; }",
    "li.msg pre { margin: 4px 0; padding: 6px 8px; background: rgba(0,0,0,.06); border-radius: 6px; overflow-x: auto; white-space: pre; font: 12px/1.4 ui-monospace, monospace; }",
    "li.msg { margin: 6px 0; padding: 8px 10px; border-radius: 10px; max-width: 88%; white-space: pre-wrap; word-wrap: break-word; }",
    "li.user { background: COLOR; color: #fff; margin-left: auto; }",
    "li.bot { background: #eef1f5; }",
    "li.notice { background: #fff4e5; color: #7a4b00; max-width: 100%; }",
    "ol.cites { margin: 6px 0 0; padding-left: 18px; font-size: 13px; }",
    "ol.cites a { color: #1d4ed8; }",
    "form { display: flex; gap: 6px; padding: 8px; border-top: 1px solid #ddd; }",
    "input { flex: 1; font-size: 15px; padding: 8px; border: 1px solid #bbb; border-radius: 8px; min-width: 0; }",
    "form button { font-size: 15px; padding: 8px 12px; border: 0; border-radius: 8px; background: COLOR; color: #fff; cursor: pointer; }",
    "form button:disabled { opacity: .5; cursor: default; }",
    ".sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }"
  ].join("\n").replace(/COLOR/g, color).replace(/SIDE/g, side);

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = text; }
    return node;
  }

  function chatIcon() {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "28");
    svg.setAttribute("height", "28");
    svg.setAttribute("aria-hidden", "true");
    var path = document.createElementNS(ns, "path");
    path.setAttribute("fill", "currentColor");
    path.setAttribute("d", "M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5" +
                      "a2 2 0 0 1 2-2zm3 6.5a1.5 1.5 0 1 0 0 .01zm5 0a1.5 1.5 0 1 0 0 .01z" +
                      "m5 0a1.5 1.5 0 1 0 0 .01z");
    svg.appendChild(path);
    return svg;
  }

  function stored() {
    try { return window.localStorage.getItem(storeKey); } catch (e) { return null; }
  }

  function store(value) {
    try { window.localStorage.setItem(storeKey, value); } catch (e) { /* private mode */ }
  }

  var host = el("div");
  host.id = "botlite-widget-" + bot;
  host.setAttribute("data-botlite-widget", bot);
  var root = host.attachShadow({mode: "open"});
  var style = el("style", null, CSS);
  root.appendChild(style);

  var bubble = el("button", "bubble");
  bubble.type = "button";
  bubble.appendChild(chatIcon());
  bubble.setAttribute("aria-label", "Open chat");
  bubble.setAttribute("aria-expanded", "false");
  var panel = el("section", "panel");
  panel.hidden = true;
  panel.setAttribute("role", "dialog");
  panel.id = "panel";
  bubble.setAttribute("aria-controls", "panel");
  var header = el("header");
  var heading = el("h2", null, script.getAttribute("data-title") || "Chat");
  var close = el("button", null, "\u00D7");
  close.type = "button";
  close.setAttribute("aria-label", "Close chat");
  header.appendChild(heading);
  header.appendChild(close);
  var log = el("ol", "log");
  log.setAttribute("aria-live", "polite");
  var form = el("form");
  var label = el("label", "sr", "Your message");
  label.htmlFor = "message";
  var input = el("input");
  input.id = "message";
  input.name = "message";
  input.autocomplete = "off";
  input.maxLength = 4000;
  input.placeholder = "Ask a question…";
  var send = el("button", null, "Send");
  send.type = "submit";
  form.appendChild(label);
  form.appendChild(input);
  form.appendChild(send);
  panel.setAttribute("aria-labelledby", "title");
  heading.id = "title";
  panel.appendChild(header);
  panel.appendChild(log);
  panel.appendChild(form);
  root.appendChild(panel);
  root.appendChild(bubble);

  var introduced = false;

  function add(className, text, blocks) {
    var item = el("li", "msg " + className);
    (blocks && blocks.length ? blocks : [{type: "text", text: text}]).forEach(function (block) {
      if (block.type === "code") {
        item.appendChild(el("pre")).appendChild(el("code", null, block.text));
      } else {
        item.appendChild(el("span", null, block.text));
      }
    });
    log.appendChild(item);
    log.scrollTop = log.scrollHeight;
    return item;
  }

  function introduce() {
    if (introduced) { return; }
    introduced = true;
    fetch(endpoint + "/widget", {headers: {"Accept": "application/json"}})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (info) {
        if (!info) { return; }
        if (!script.getAttribute("data-title") && info.name) { heading.textContent = info.name; }
        if (info.greeting && !log.firstChild) { add("bot", info.greeting); }
      }, function () { /* the first message reports trouble */ });
  }

  function setOpen(open) {
    panel.hidden = !open;
    bubble.setAttribute("aria-expanded", open ? "true" : "false");
    bubble.setAttribute("aria-label", open ? "Close chat" : "Open chat");
    if (open) {
      introduce();
      input.focus();
    }
  }

  bubble.addEventListener("click", function () { setOpen(panel.hidden); });
  close.addEventListener("click", function () { setOpen(false); bubble.focus(); });
  panel.addEventListener("keydown", function (event) {
    if (event.key === "Escape") { setOpen(false); bubble.focus(); }
  });

  function showReply(data) {
    var item = add("bot", data.reply, data.blocks);
    if (data.sources && data.sources.length) {
      var cites = el("ol", "cites");
      data.sources.forEach(function (cite) {
        var li = el("li");
        var title = cite.title || cite.url || "source";
        if (/^https?:\/\//i.test(cite.url || "")) {
          var link = el("a", null, title);
          link.href = cite.url;
          link.target = "_blank";
          link.rel = "noopener noreferrer";
          li.appendChild(link);
        } else {
          li.textContent = title;
        }
        cites.appendChild(li);
      });
      item.appendChild(cites);
    }
    log.scrollTop = log.scrollHeight;
  }

  function pause(seconds) {
    send.disabled = true;
    window.setTimeout(function () { send.disabled = false; }, seconds * 1000);
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text || send.disabled) { return; }
    add("user", text);
    input.value = "";
    var body = {message: text};
    var session = stored();
    if (session) { body.session_id = session; }
    fetch(endpoint + "/chat", {method: "POST", body: JSON.stringify(body),
                               headers: {"Content-Type": "application/json",
                                         "Accept": "application/json"}})
      .then(function (response) {
        if (response.status === 429) {
          var wait = parseInt(response.headers.get("Retry-After") || "30", 10) || 30;
          add("notice", "You're sending messages faster than this chat allows. " +
              "Please wait " + wait + " second" + (wait === 1 ? "" : "s") + " and try again.");
          pause(Math.min(wait, 120));
          return;
        }
        if (!response.ok) {
          add("notice", "Sorry, something went wrong. Please try again in a moment.");
          return;
        }
        return response.json().then(function (data) {
          if (data.session_id) { store(data.session_id); }
          showReply(data);
        });
      }, function () {
        // Also what a page on a site the bot does not allow sees: the browser hides
        // the refusal, which carries no CORS headers.
        if (window.console) {
          console.warn("botlite widget: no answer from " + base + "; is this site in the " +
                       "bot's allowed domains?");
        }
        add("notice", "The chat cannot be reached right now. Please try again later.");
      });
  });

  function mount() {
    document.body.appendChild(host);
    if (script.hasAttribute("data-open")) { setOpen(true); }
  }

  if (document.body) { mount(); } else { document.addEventListener("DOMContentLoaded", mount); }
}());
