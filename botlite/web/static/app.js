/* botlite dashboard: small progressive behaviour for the server-rendered pages.
 *
 * - form[data-api] and button[data-api] call the JSON API with the session cookie and
 *   the page's CSRF token (X-CSRF-Token), then follow data-then: "reload", "/path/{id}"
 *   (filled from the JSON answer) or "refresh:ELEMENT_ID".
 * - [data-refresh] regions reload their HTML fragment every data-refresh-ms while the
 *   page is visible (and, for sources, while something is still being processed).
 * - .dropzone[data-upload] uploads dropped or chosen files.
 * - #playground chats with a bot and shows intent, source, confidence and citations.
 * Everything user-supplied is inserted with textContent, never as HTML.
 */
(function () {
  "use strict";

  var meta = document.querySelector('meta[name="csrf-token"]');
  var CSRF = meta ? meta.getAttribute("content") : "";

  function api(method, url, body) {
    var options = {method: method, credentials: "same-origin",
                   headers: {"X-CSRF-Token": CSRF, "Accept": "application/json"}};
    if (body instanceof FormData) {
      options.body = body;
    } else if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(url, options).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (!response.ok) {
          var message = data && data.error ? data.error.message : "HTTP " + response.status;
          var error = new Error(message);
          error.status = response.status;
          throw error;
        }
        return data;
      });
    });
  }

  function fieldsOf(form) {
    var body = {};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.disabled || el.type === "submit" || el.type === "button") { return; }
      var kind = el.getAttribute("data-type");
      var value = el.value;
      if (el.type === "checkbox") {
        body[el.name] = el.checked;
      } else if (kind === "int") {
        body[el.name] = value.trim() === "" ? null : parseInt(value, 10);
      } else if (kind === "lines") {
        body[el.name] = value.split("\n").map(function (line) { return line.trim(); })
          .filter(function (line) { return line !== ""; });
      } else {
        body[el.name] = value;
      }
    });
    return body;
  }

  function errorSlot(el) {
    var scope = el.closest("form, .dropzone, .card, section, main");
    return scope ? scope.querySelector(".form-error") : null;
  }

  function showError(el, message) {
    var slot = errorSlot(el);
    if (slot) {
      slot.textContent = message;
      slot.hidden = false;
      slot.scrollIntoView({block: "nearest"});
    } else {
      window.alert(message);
    }
  }

  function clearError(el) {
    var slot = errorSlot(el);
    if (slot) { slot.hidden = true; slot.textContent = ""; }
  }

  function follow(spec, data) {
    if (!spec || spec === "reload") {
      window.location.reload();
    } else if (spec.indexOf("refresh:") === 0) {
      var region = document.getElementById(spec.slice(8));
      if (region) { refresh(region); }
    } else {
      window.location.assign(spec.replace(/\{(\w+)\}/g, function (_, key) {
        return encodeURIComponent(data && data[key] !== undefined ? data[key] : "");
      }));
    }
  }

  function run(el, method, url, body) {
    var question = el.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { return; }
    var button = el.tagName === "FORM" ? el.querySelector('[type="submit"]') : el;
    if (button) { button.disabled = true; }
    clearError(el);
    api(method, url, body).then(function (data) {
      if (button) { button.disabled = false; }
      follow(el.getAttribute("data-then"), data);
    }, function (error) {
      if (button) { button.disabled = false; }
      showError(el, error.message);
    });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form[data-api]")) { return; }
    event.preventDefault();
    run(form, form.getAttribute("data-method") || "POST", form.getAttribute("data-api"),
        fieldsOf(form));
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button[data-api]") : null;
    if (!button) { return; }
    event.preventDefault();
    var body = button.getAttribute("data-body");
    run(button, button.getAttribute("data-method") || "POST", button.getAttribute("data-api"),
        body ? JSON.parse(body) : undefined);
  });

  /* -- live regions ------------------------------------------------------------ */

  function wantsPolling(region) {
    var marker = region.getAttribute("data-refresh-while");
    return !marker || region.querySelector(marker) !== null;
  }

  function schedule(region) {
    window.clearTimeout(region.botliteTimer);
    if (!wantsPolling(region)) { return; }
    var every = parseInt(region.getAttribute("data-refresh-ms") || "2000", 10);
    region.botliteTimer = window.setTimeout(function () {
      if (document.hidden) { schedule(region); } else { refresh(region); }
    }, every);
  }

  function refresh(region) {
    var focused = document.activeElement && region.contains(document.activeElement) ?
      document.activeElement.id : null;
    return fetch(region.getAttribute("data-refresh"), {credentials: "same-origin",
                                                       headers: {"Accept": "text/html"}})
      .then(function (response) {
        if (response.redirected) {  // the session ended: show the login page
          window.location.reload();
          throw new Error("logged out");
        }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        // Our own server-rendered, escaped fragment.
        region.innerHTML = html;
        if (focused && document.getElementById(focused)) {
          document.getElementById(focused).focus();
        }
        schedule(region);
      }, function () { schedule(region); });
  }

  Array.prototype.forEach.call(document.querySelectorAll("[data-refresh]"), schedule);

  /* -- crontab previews ---------------------------------------------------------- */

  Array.prototype.forEach.call(document.querySelectorAll("input[data-preview]"), function (input) {
    var target = document.getElementById(input.getAttribute("data-preview-target"));
    var timer = null;
    function show() {
      var url = input.getAttribute("data-preview") + "?count=5&crontab=" +
        encodeURIComponent(input.value.trim());
      api("GET", url).then(function (data) {
        target.textContent = "";
        target.classList.remove("error");
        data.next_runs.forEach(function (when) { target.appendChild(element("li", null, when)); });
      }, function (error) {
        target.textContent = "";
        target.classList.add("error");
        target.appendChild(element("li", null, error.message));
      });
    }
    input.addEventListener("input", function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(show, 250);
    });
  });

  /* -- uploads ------------------------------------------------------------------- */

  function uploadAll(zone, files) {
    var url = zone.getAttribute("data-upload");
    var status = zone.querySelector(".upload-status");
    var target = document.getElementById(zone.getAttribute("data-refresh-target"));
    var list = Array.prototype.slice.call(files);
    clearError(zone);
    function next(index) {
      if (index >= list.length) {
        status.textContent = list.length === 1 ? "Uploaded " + list[0].name + "." :
          "Uploaded " + list.length + " files.";
        return;
      }
      var file = list[index];
      status.textContent = "Uploading " + file.name + "…";
      var form = new FormData();
      form.append("file", file);
      api("POST", url, form).then(function () {
        if (target) { refresh(target); }
        next(index + 1);
      }, function (error) {
        showError(zone, file.name + ": " + error.message);
        status.textContent = "";
      });
    }
    next(0);
  }

  Array.prototype.forEach.call(document.querySelectorAll(".dropzone[data-upload]"), function (zone) {
    var input = zone.querySelector('input[type="file"]');
    input.addEventListener("change", function () {
      if (input.files.length) { uploadAll(zone, input.files); }
      input.value = "";
    });
    zone.addEventListener("dragover", function (event) {
      event.preventDefault();
      zone.classList.add("over");
    });
    zone.addEventListener("dragleave", function () { zone.classList.remove("over"); });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      zone.classList.remove("over");
      if (event.dataTransfer && event.dataTransfer.files.length) {
        uploadAll(zone, event.dataTransfer.files);
      }
    });
  });

  /* -- playground ------------------------------------------------------------------ */

  function element(tag, className, text) {
    var el = document.createElement(tag);
    if (className) { el.className = className; }
    if (text !== undefined && text !== null) { el.textContent = text; }
    return el;
  }

  function citationHref(bot, cite) {
    if (/^https?:\/\//i.test(cite.url || "")) { return cite.url; }
    return "/bots/" + encodeURIComponent(bot) + "/sources/" + encodeURIComponent(cite.source_id);
  }

  function replyItem(bot, data) {
    var item = element("li", "msg bot");
    (data.blocks && data.blocks.length ? data.blocks : [{type: "text", text: data.reply}])
      .forEach(function (block) {
        if (block.type === "code") {
          item.appendChild(element("pre")).appendChild(element("code", null, block.text));
        } else {
          item.appendChild(element("p", null, block.text));
        }
      });
    var meta = element("div", "meta");
    [["intent", data.intent || "none"], ["source", data.answer_source || "-"],
     ["confidence", typeof data.confidence === "number" ? data.confidence.toFixed(2) : "-"]]
      .forEach(function (pair) {
        var span = element("span", null, pair[0] + " ");
        span.appendChild(element("b", null, pair[1]));
        meta.appendChild(span);
      });
    item.appendChild(meta);
    if (data.sources && data.sources.length) {
      var list = element("ol", "citations");
      data.sources.forEach(function (cite, index) {
        var li = element("li");
        var link = element("a", null, "[" + (index + 1) + "] " +
                           (cite.title || cite.url || cite.source_id));
        link.href = citationHref(bot, cite);
        link.rel = "noopener noreferrer";
        li.appendChild(link);
        if (cite.snippet) { li.appendChild(element("span", "hint", " " + cite.snippet)); }
        list.appendChild(li);
      });
      item.appendChild(list);
    }
    return item;
  }

  var playground = document.getElementById("playground");
  if (playground) {
    var bot = playground.getAttribute("data-bot");
    var log = playground.querySelector(".log");
    var form = playground.querySelector("form.ask");
    var input = form.querySelector("input");
    var key = "botlite-playground:" + bot;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = input.value.trim();
      if (!text) { return; }
      var sessionId = window.sessionStorage.getItem(key);
      var mine = element("li", "msg user");
      mine.appendChild(element("p", null, text));
      log.appendChild(mine);
      playground.querySelector(".log-empty").hidden = true;
      input.value = "";
      clearError(form);
      var body = {message: text};
      if (sessionId) { body.session_id = sessionId; }
      api("POST", "/api/chatbots/" + encodeURIComponent(bot) + "/chat", body).then(function (data) {
        window.sessionStorage.setItem(key, data.session_id);
        var item = replyItem(bot, data);
        log.appendChild(item);
        item.scrollIntoView({block: "nearest"});
      }, function (error) {
        showError(playground, error.message);
      });
    });
  }
}());
