/* The workbench page's own script, inlined in <head> by index.html.j2 (before Voila's bundle; Jinja reads
   this file, so it must never contain a Jinja delimiter).

   1. Over-cap uploads. A file over the page's upload cap (data-upload-cap, below the websocket's message
      limit) is never sent: it would close the connection silently. The upload widget's file input is
      detached from the document, so its "change" listeners are wrapped here: an over-cap file is refused
      with a message in the error panel and the widget never reads it.
   2. The first paint. Voila's bundle and the widgets take seconds of browser CPU (many more when a room
      of visitors load at once), so the page's first HTML carries a plain bar (#mushroom-first) with an
      upload button and a sample button that work at once: a file or sample chosen there waits, and is
      handed to the upload widget (or its sample button) as soon as the widgets are on the page; the bar
      then hides (a file chooser opened from it and closed later still delivers). */
(function () {
  "use strict";
  var widgetInput = null; /* the upload widget's (detached) file input, once the widgets have rendered */

  function uploadCap() {
    var capEl = document.querySelector("[data-upload-cap]");
    return capEl ? parseInt(capEl.getAttribute("data-upload-cap"), 10) : 0;
  }

  function refused(input) {
    var file = input.files && input.files[0];
    var cap = uploadCap();
    var panel = document.querySelector(".mushroom-errors");
    if (panel && panel.dataset.mushroomPageError) {  /* an earlier refusal from this script */
      panel.style.display = "none"; delete panel.dataset.mushroomPageError;
    }
    if (!file || !cap || file.size <= cap) return false;
    var text = file.name + " is " + (file.size / 1e6).toFixed(1) + " MB, over the " + (cap / 1e6).toFixed(0) +
      " MB this page can receive. Nothing was sent or scored: score large files with " +
      "`mushroom predict FILE -o scored.csv` on the command line.";
    input.value = "";
    if (panel) {
      var content = panel.querySelector(".widget-html-content") || panel;
      var b = document.createElement("b"); b.textContent = text;
      content.replaceChildren(b);
      panel.dataset.mushroomPageError = "1";
      panel.style.display = "";
    }
    return true;
  }

  var add = HTMLInputElement.prototype.addEventListener;
  HTMLInputElement.prototype.addEventListener = function (type, listener, options) {
    if (type === "change" && typeof listener === "function" && this.type === "file") {
      var input = this, inner = listener;
      widgetInput = input;
      listener = function (ev) {
        if (refused(input)) return undefined;
        return inner.call(this, ev);
      };
    }
    return add.call(this, type, listener, options);
  };

  /* ---- the first paint: a plain bar that works before the widgets do ---- */
  var pending = null;  /* {files: FileList} or {sample: true}: what the visitor chose before the widgets */

  function say(bar, text) {
    var note = bar.querySelector(".mushroom-first-note");
    if (note) note.textContent = text;
  }

  var widgets = null;  /* {input, sample} once the widgets are on the page */

  function deliver() {
    if (!widgets || !pending) return;
    if (pending.files) {
      widgets.input.files = pending.files;
      widgets.input.dispatchEvent(new Event("change"));
    } else {
      widgets.sample.click();
    }
    pending = null;
  }

  function handOver(bar) {
    var app = document.querySelector(".mushroom-app");
    var upload = app && app.querySelector(".mushroom-upload:not([disabled])");
    var sample = app && app.querySelector(".mushroom-sample");
    if (!upload || !sample || !widgetInput || upload.offsetParent === null) return false;
    widgets = {input: widgetInput, sample: sample};
    bar.style.display = "none";
    deliver();  /* and a file chooser still open from the bar delivers when it closes */
    return true;
  }

  window.mushroomFirstPaint = function () {
    var bar = document.getElementById("mushroom-first");
    if (!bar) return;
    var file = bar.querySelector("input[type=file]");
    bar.querySelector(".mushroom-first-upload").onclick = function () { file.click(); };
    file.onchange = function () {
      if (!file.files || !file.files.length) return;
      pending = {files: file.files};
      say(bar, file.files[0].name + " is waiting: it is scored as soon as the workbench has loaded.");
      deliver();
    };
    bar.querySelector(".mushroom-first-sample").onclick = function () {
      pending = {sample: true};
      say(bar, "The sample is waiting: it is scored as soon as the workbench has loaded.");
    };
    var timer = setInterval(function () { if (handOver(bar)) clearInterval(timer); }, 250);
  };
})();
