/* Dossier widget: a question box for any web page (wiki), calling Dossier's /api/ask.
 *
 *   <script src="http://HOST:PORT/widget.js" defer></script>
 *   <div data-dossier data-dossier-url="http://HOST:PORT" data-dossier-token="(optional)"></div>
 *
 * No dependencies. All text from the server is put into the page with textContent, never as HTML,
 * and only http(s) links become clickable.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  var scriptOrigin = script && script.src ? new URL(script.src, window.location.href).origin : "";
  var STYLE_ID = "dossier-widget-style";
  var CSS = [
    ".dossier-widget{font:14px/1.45 system-ui,sans-serif;border:1px solid #d0d7de;border-radius:8px;padding:10px;max-width:640px;background:#fff;color:#1f2328}",
    ".dossier-widget form{display:flex;gap:6px}",
    ".dossier-widget input{flex:1;padding:6px 8px;border:1px solid #d0d7de;border-radius:6px;font:inherit}",
    ".dossier-widget button{padding:6px 12px;border:0;border-radius:6px;background:#1f6feb;color:#fff;font:inherit;cursor:pointer}",
    ".dossier-widget button[disabled]{opacity:.6;cursor:wait}",
    ".dossier-widget .dossier-status{margin:6px 0 0;color:#57606a;font-size:12px}",
    ".dossier-widget .dossier-error{color:#b91c1c}",
    ".dossier-widget .dossier-answer{margin:8px 0 0;white-space:pre-wrap}",
    ".dossier-widget .dossier-ref{font-size:.8em;vertical-align:super;color:#1f6feb;font-weight:600}",
    ".dossier-widget ol{margin:6px 0 0;padding-left:22px}",
    ".dossier-widget li{margin:4px 0}",
    ".dossier-widget blockquote{margin:2px 0 0;padding:2px 8px;border-left:3px solid #d0d7de;color:#57606a;font-size:12px}",
    ".dossier-widget mark{background:#fde68a;color:inherit}"
  ].join("\n");

  function addStyle() {
    if (document.getElementById(STYLE_ID)) return;
    var style = document.createElement("style");
    style.id = STYLE_ID;
    style.textContent = CSS;
    document.head.appendChild(style);
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function safeHref(url) {
    try {
      var parsed = new URL(url);
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : "";
    } catch (e) {
      return "";
    }
  }

  // The answer text with its [n] markers as small superscripts; every piece is a text node.
  function renderText(parent, text) {
    var parts = String(text).split(/\[(\d+)\]/);
    for (var i = 0; i < parts.length; i++) {
      if (i % 2 === 0) parent.appendChild(document.createTextNode(parts[i]));
      else parent.appendChild(el("span", "dossier-ref", "[" + parts[i] + "]"));
    }
  }

  function renderPassage(parent, passage, sentence) {
    var at = sentence ? passage.indexOf(sentence) : -1;
    if (at < 0) {
      parent.appendChild(document.createTextNode(passage));
      return;
    }
    parent.appendChild(document.createTextNode(passage.slice(0, at)));
    parent.appendChild(el("mark", "", sentence));
    parent.appendChild(document.createTextNode(passage.slice(at + sentence.length)));
  }

  function renderSource(list, item, isCitation) {
    var li = el("li", "dossier-source");
    if (isCitation) li.value = item.n;
    var title = el("strong", "", item.title || "Untitled");
    var href = safeHref(item.url || "");
    if (href) {
      var a = el("a");
      a.href = href;
      a.target = "_blank";
      a.rel = "noopener noreferrer nofollow";
      a.appendChild(title);
      li.appendChild(a);
    } else {
      li.appendChild(title);
    }
    var meta = [item.source, item.published].filter(Boolean).join(", ");
    if (item.page) meta += (meta ? ", " : "") + "p. " + item.page;
    if (meta) li.appendChild(el("span", "", " (" + meta + ")"));
    var quote = el("blockquote");
    renderPassage(quote, isCitation ? item.passage : item.text, isCitation ? item.sentence : "");
    li.appendChild(quote);
    list.appendChild(li);
  }

  function render(box, answer) {
    box.textContent = "";
    var text = el("div", "dossier-answer");
    renderText(text, answer.text);
    box.appendChild(text);
    var sources = answer.citations && answer.citations.length ? answer.citations : answer.closest || [];
    if (!sources.length) return;
    box.appendChild(el("div", "dossier-status", answer.citations.length ? "Sources" : "Closest passages"));
    var list = el(answer.citations.length ? "ol" : "ul", "dossier-sources");
    for (var i = 0; i < sources.length; i++) renderSource(list, sources[i], answer.citations.length > 0);
    box.appendChild(list);
  }

  function mount(root) {
    if (!root || root.getAttribute("data-dossier-mounted")) return;
    root.setAttribute("data-dossier-mounted", "1");
    addStyle();
    var base = (root.getAttribute("data-dossier-url") || scriptOrigin).replace(/\/+$/, "");
    var token = root.getAttribute("data-dossier-token") || "";
    var history = [];

    var widget = el("div", "dossier-widget");
    var form = el("form");
    var input = el("input");
    input.type = "text";
    input.name = "question";
    input.placeholder = root.getAttribute("data-dossier-placeholder") || "Ask the news articles...";
    input.setAttribute("aria-label", "Question");
    var button = el("button", "", "Ask");
    button.type = "submit";
    form.appendChild(input);
    form.appendChild(button);
    var status = el("div", "dossier-status");
    var box = el("div", "dossier-result");
    widget.appendChild(form);
    widget.appendChild(status);
    widget.appendChild(box);
    root.appendChild(widget);

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var question = input.value.trim();
      if (!question) return;
      var headers = { "Content-Type": "application/json" };
      if (token) headers.Authorization = "Bearer " + token;
      button.disabled = true;
      status.className = "dossier-status";
      status.textContent = "Searching the articles...";
      fetch(base + "/api/ask", {
        method: "POST",
        headers: headers,
        body: JSON.stringify({ question: question, history: history.slice(-6) })
      })
        .then(
          function (response) {
            return response.json().then(
              function (data) { return { ok: response.ok, data: data }; },
              function () { return { ok: false, data: { error: "HTTP " + response.status } }; }
            );
          },
          // The browser hides why a request failed: the server is down, or it does not let this site's pages in.
          function () {
            throw new Error(
              "the server at " + base + " did not answer this page. Either it is not running, or it does not " +
              "accept requests from " + window.location.origin + ": set DOSSIER_CORS_ORIGINS=" +
              window.location.origin + " on the server."
            );
          }
        )
        .then(function (result) {
          if (!result.ok) throw new Error(result.data.error || "the server refused the question");
          status.textContent = "";
          render(box, result.data);
          history.push({ role: "user", content: question }, { role: "assistant", content: result.data.text });
        })
        .catch(function (error) {
          status.className = "dossier-status dossier-error";
          status.textContent = "Dossier could not answer: " + (error && error.message ? error.message : error);
        })
        .then(function () {
          button.disabled = false;
        });
    });
  }

  function mountAll() {
    var roots = document.querySelectorAll("[data-dossier]");
    for (var i = 0; i < roots.length; i++) mount(roots[i]);
  }

  window.Dossier = { mount: mount, mountAll: mountAll };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mountAll);
  else mountAll();
})();
