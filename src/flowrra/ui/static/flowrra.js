/* flowrra dashboard: local times, actions, schedule forms and live updates.
   Plain JavaScript, no dependencies. Every URL starts with the mount prefix in
   <body data-root>, and every state-changing request sends X-Flowrra-CSRF: 1. */
(function () {
  "use strict";

  var root = document.body.dataset.root || "";
  var page = document.body.dataset.page || "";
  var RECENT = 10;
  var POLL_MS = 5000;

  /* ---- times ------------------------------------------------------------ */

  function localTime(el) {
    var iso = el.getAttribute("datetime");
    var date = iso ? new Date(iso) : null;
    if (!date || isNaN(date.getTime())) return;
    el.title = iso;
    el.textContent = date.toLocaleString();
  }

  function localTimes(scope) {
    scope.querySelectorAll("time[datetime]").forEach(localTime);
  }

  function timeElement(iso) {
    if (!iso) return document.createTextNode("–");
    var el = document.createElement("time");
    el.setAttribute("datetime", iso);
    el.textContent = iso;
    localTime(el);
    return el;
  }

  /* ---- requests --------------------------------------------------------- */

  function notice(text, isError) {
    var el = document.getElementById("notice");
    if (!el) return;
    el.textContent = text;
    el.hidden = false;
    el.classList.toggle("error", !!isError);
  }

  function send(method, url, body) {
    var options = {
      method: method,
      credentials: "same-origin",
      headers: { "X-Flowrra-CSRF": "1", "Accept": "application/json" }
    };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(url, options).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) throw new Error(data.error || ("HTTP " + response.status));
        return data;
      });
    });
  }

  function afterAction(button, data) {
    if (button.hasAttribute("data-remove-row")) {
      var row = button.closest("tr");
      var body = row && row.parentNode;
      if (row) row.remove();
      if (body && !body.children.length) {
        var table = body.closest("table");
        var empty = table && table.parentNode.querySelector(".empty");
        if (table) table.hidden = true;
        if (empty) empty.hidden = false;
      }
    }
    if (button.hasAttribute("data-reload")) window.location.reload();
    var follow = button.getAttribute("data-follow");
    if (follow && data[follow]) {
      window.location.href = root + "/tasks/" + encodeURIComponent(data[follow]);
      return;
    }
    notice("Done.", false);
  }

  function onAction(event) {
    var button = event.target.closest("button[data-action]");
    if (!button) return;
    var question = button.getAttribute("data-confirm");
    if (question && !window.confirm(question)) return;
    button.disabled = true;
    send(button.getAttribute("data-method") || "POST", button.getAttribute("data-action"))
      .then(function (data) { afterAction(button, data); })
      .catch(function (error) { notice(error.message, true); })
      .then(function () { button.disabled = false; });
  }

  /* ---- schedule forms --------------------------------------------------- */

  var NUMBERS = { interval: true, priority: true };

  function formBody(form) {
    var body = {};
    new FormData(form).forEach(function (value, key) {
      value = String(value).trim();
      if (value === "") return;
      if (key === "args" || key === "kwargs") {
        try { body[key] = JSON.parse(value); }
        catch (e) { throw new Error(key + " is not valid JSON"); }
      } else if (NUMBERS[key]) {
        body[key] = Number(value);
      } else if (key === "run_at") {
        body[key] = new Date(value).toISOString();
      } else {
        body[key] = value;
      }
    });
    return body;
  }

  function onCreate(event) {
    var form = event.target.closest("form[data-create]");
    if (!form) return;
    event.preventDefault();
    var problem = form.querySelector(".form-error");
    var body;
    try { body = formBody(form); }
    catch (error) { problem.textContent = error.message; problem.hidden = false; return; }
    send("POST", form.getAttribute("data-create"), body)
      .then(function () { window.location.reload(); })
      .catch(function (error) { problem.textContent = error.message; problem.hidden = false; });
  }

  /* ---- live updates ----------------------------------------------------- */

  function setCount(path, value) {
    document.querySelectorAll('[data-count="' + path + '"]').forEach(function (el) {
      el.textContent = value === null || value === undefined ? "–" : String(value);
    });
  }

  function applyStats(stats) {
    if (!stats || typeof stats !== "object") return;
    ["results", "queues", "tasks"].forEach(function (group) {
      var values = stats[group];
      if (!values || typeof values !== "object") return;
      Object.keys(values).forEach(function (key) { setCount(group + "." + key, values[key]); });
    });
    (stats.queue_details || []).forEach(function (queue) {
      var card = document.querySelector('.card[data-queue="' + CSS.escape(queue.queue) + '"]');
      if (!card) return;
      ["ready", "delayed", "in_flight", "dead"].forEach(function (key) {
        var cell = card.querySelector('[data-field="' + key + '"]');
        if (cell) cell.textContent = String(queue[key]);
      });
    });
  }

  function badge(status) {
    var el = document.createElement("span");
    el.className = "badge status-" + status;
    el.setAttribute("data-field", "status");
    el.textContent = status;
    return el;
  }

  function argumentsText(task) {
    var parts = (task.args || []).map(function (a) { return JSON.stringify(a); });
    var kwargs = task.kwargs || {};
    Object.keys(kwargs).forEach(function (k) { parts.push(k + "=" + JSON.stringify(kwargs[k])); });
    return parts.join(", ");
  }

  function cell(content, className) {
    var td = document.createElement("td");
    if (className) td.className = className;
    if (typeof content === "string") td.textContent = content; else td.appendChild(content);
    return td;
  }

  function buildRow(task) {
    var row = document.createElement("tr");
    row.setAttribute("data-task-id", task.task_id);
    var link = document.createElement("a");
    link.href = root + "/tasks/" + encodeURIComponent(task.task_id);
    link.className = "mono";
    link.textContent = task.task_id.length > 13 ? task.task_id.slice(0, 12) + "…" : task.task_id;
    var args = argumentsText(task);
    var argsCell = cell(args.length > 80 ? args.slice(0, 79) + "…" : args, "args");
    argsCell.title = args;
    var name = cell(task.task_name || "–");
    name.setAttribute("data-field", "task_name");
    var submitted = cell(timeElement(task.submitted_at));
    submitted.setAttribute("data-field", "submitted_at");
    var finished = cell(timeElement(task.finished_at));
    finished.setAttribute("data-field", "finished_at");
    var retries = cell(String(task.retries || 0), "num");
    retries.setAttribute("data-field", "retries");
    [cell(link), name, cell(badge(task.status)), argsCell, submitted, finished, retries]
      .forEach(function (td) { row.appendChild(td); });
    row.classList.add("fresh");
    return row;
  }

  function updateRow(row, task) {
    row.querySelectorAll('[data-field="status"]').forEach(function (old) {
      old.replaceWith(badge(task.status));
    });
    var finished = row.querySelector('[data-field="finished_at"]');
    if (finished) { finished.textContent = ""; finished.appendChild(timeElement(task.finished_at)); }
    var started = row.querySelector('[data-field="started_at"]');
    if (started) { started.textContent = ""; started.appendChild(timeElement(task.started_at)); }
    var retries = row.querySelector('[data-field="retries"]');
    if (retries) retries.textContent = String(task.retries || 0);
  }

  function insertRecent(tableId, task) {
    var table = document.getElementById(tableId);
    if (!table) return;
    var body = table.tBodies[0];
    var old = body.querySelector('tr[data-task-id="' + CSS.escape(task.task_id) + '"]');
    if (old) old.remove();
    body.insertBefore(buildRow(task), body.firstChild);
    while (body.rows.length > RECENT) body.deleteRow(body.rows.length - 1);
    table.hidden = false;
    var empty = table.parentNode.querySelector(".empty");
    if (empty) empty.hidden = true;
  }

  function applyTask(task) {
    if (!task || !task.task_id) return;
    var selector = '[data-task-id="' + CSS.escape(task.task_id) + '"]';
    document.querySelectorAll(selector).forEach(function (row) { updateRow(row, task); });
    if (page === "overview") {
      insertRecent("recent-tasks", task);
      if (task.status === "failed") insertRecent("recent-failures", task);
    }
    refreshStatsSoon();
  }

  var statsTimer = null;
  function refreshStatsSoon() {
    if (statsTimer !== null) return;
    statsTimer = window.setTimeout(function () {
      statsTimer = null;
      pollStats();
    }, 1000);
  }

  function pollStats() {
    return fetch(root + "/api/stats", { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(applyStats)
      .catch(function () { /* the next poll tries again */ });
  }

  function handle(event) {
    if (!event || typeof event !== "object") return;
    if (event.type === "stats") applyStats(event.stats);
    else if (event.type === "task.update") applyTask(event.task);
  }

  function liveState(text, on) {
    var el = document.getElementById("live-state");
    if (!el) return;
    el.textContent = text;
    el.classList.toggle("on", !!on);
  }

  function parse(text) {
    try { return JSON.parse(text); } catch (e) { return null; }
  }

  function startPolling() {
    liveState("polling", false);
    window.setInterval(pollStats, POLL_MS);
  }

  function startEventSource() {
    if (!window.EventSource) { startPolling(); return; }
    var source = new EventSource(root + "/api/events");
    var opened = false;
    source.onopen = function () { opened = true; liveState("live (SSE)", true); };
    source.onmessage = function (message) { handle(parse(message.data)); };
    source.onerror = function () {
      if (!opened) { source.close(); startPolling(); return; }
      liveState("reconnecting", false);
    };
  }

  function startWebSocket() {
    if (!window.WebSocket) { startEventSource(); return; }
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket;
    try { socket = new WebSocket(scheme + window.location.host + root + "/ws"); }
    catch (e) { startEventSource(); return; }
    var opened = false;
    socket.onopen = function () { opened = true; liveState("live", true); };
    socket.onmessage = function (message) { handle(parse(message.data)); };
    socket.onclose = function () {
      if (!opened) { startEventSource(); return; }
      liveState("reconnecting", false);
      window.setTimeout(startWebSocket, 3000);
    };
  }

  /* ---- start ------------------------------------------------------------ */

  localTimes(document);
  document.addEventListener("click", onAction);
  document.addEventListener("submit", onCreate);
  startWebSocket();
})();
