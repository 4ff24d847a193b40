/* cq.live in the browser: follows each [data-cq-task] element over its WebSocket.
   Plain JavaScript, no build step; reconnects after a dropped connection (the
   first message of each connection is the whole current state). */
(function () {
  if (window.cqLive) { return; }
  var REFUSED = 4403;

  function bind(el) {
    if (el.getAttribute("data-cq-bound")) { return; }
    el.setAttribute("data-cq-bound", "1");
    var taskId = el.getAttribute("data-cq-task");
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var url = scheme + location.host + el.getAttribute("data-cq-path");
    var fill = el.querySelector(".cq-progress-fill");
    var bar = el.querySelector(".cq-progress-bar");
    var status = el.querySelector(".cq-progress-status");
    var percent = el.querySelector(".cq-progress-percent");
    var message = el.querySelector(".cq-progress-message");
    var log = el.querySelector(".cq-progress-log");
    var finished = false;
    var wait = 500;

    function setPercent(value) {
      if (value === null || value === undefined) { return; }
      fill.style.width = value + "%";
      bar.setAttribute("aria-valuenow", Math.round(value));
      percent.textContent = Math.round(value) + " %";
    }
    function addLine(line) {
      if (!log) { return; }
      var item = document.createElement("li");
      item.className = "cq-level-" + line.level;
      item.textContent = (line.timestamp || "").slice(11, 19) + " " + line.message;
      log.appendChild(item);
      log.scrollTop = log.scrollHeight;
    }
    function onState(state) {
      el.setAttribute("data-cq-status", state.task.status);
      status.textContent = state.task.status_label;
      if (state.task.progress && state.task.progress.message) {
        message.textContent = state.task.progress.message;
      }
      if (state.task.error) { message.textContent = state.task.error; }
      setPercent(state.percent);
      if (state.logs && log) {
        log.textContent = "";
        state.logs.forEach(addLine);
      }
      finished = state.task.done;
    }
    function onProgress(event) {
      if (event.task_id !== taskId) { return; }
      message.textContent = event.progress.message || "";
      if (event.progress.total) { setPercent(100 * event.progress.done / event.progress.total); }
    }
    function open() {
      var socket = new WebSocket(url);
      socket.onopen = function () { wait = 500; };
      socket.onmessage = function (event) {
        var data = JSON.parse(event.data);
        if (data.type === "state") { onState(data); }
        else if (data.type === "progress") { onProgress(data); }
        else if (data.type === "log") { data.lines.forEach(addLine); }
        if (finished) { socket.close(); }
      };
      socket.onclose = function (event) {
        if (event.code === REFUSED) { status.textContent = "Not allowed to watch this task"; return; }
        if (!finished) { setTimeout(open, wait); wait = Math.min(wait * 2, 10000); }
      };
    }
    if (el.getAttribute("data-cq-status") && !finished) { open(); }
  }

  window.cqLive = {
    scan: function () { document.querySelectorAll("[data-cq-task]").forEach(bind); }
  };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", window.cqLive.scan);
  } else {
    window.cqLive.scan();
  }
})();
