// The rating page of a dermsynth visual Turing test. All state lives on the server: this page shows the
// rater's landing page, then their current image (fetched by its opaque id), sends each answer as it is
// given, and moves on. One deliberate action is one answer: an answer is taken only once the image has been
// on screen for the study's minimum display time, never while one is being sent, never from a held key, and
// focus leaves the buttons after a click (so Enter cannot press one again). The server checks the same.
"use strict";

(() => {
  const root = document.getElementById("vtt");
  const token = root.dataset.token;
  const api = (path) => `/api/${encodeURIComponent(token)}${path}`;
  const $ = (id) => document.getElementById(id);

  let state = null;      // the server's view: settings, progress, own answered items + the current one
  let pos = 0;           // the position on screen
  let confidence = null; // chosen for the image on screen
  let shownAt = null;    // when the image on screen appeared (for elapsed_ms)
  let readyAt = Infinity; // answers are taken from this time on (image shown + minimum display time)
  let hideTimer = null;
  let readyTimer = null;
  let objectUrl = null;
  let busy = false;
  let loadSeq = 0;       // drops image responses that arrive after the rater moved on
  let feedback = null;   // after a calibration answer: the key, until the rater continues
  let paused = false;
  let offline = false;
  let view = { zoom: 0 }; // 0: fit (never enlarged); 1, 2, 4, 8: that many screen pixels per image pixel

  function say(text) { $("message").textContent = text || ""; }

  async function errorText(response) {
    try { return (await response.json()).error || response.statusText; } catch { return response.statusText; }
  }

  // -- talking to the server; a lost connection (server restarted) is waited out, then the state reloaded --

  async function waitForServer() {
    if (offline) return;
    offline = true;
    root.dataset.offline = "1";
    say("Connection to the study server lost; retrying… (your answers so far are saved)");
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      try {
        const response = await fetch(api("/state"), { cache: "no-store" });
        if (response.ok || response.status === 404) break;
      } catch { /* still down */ }
    }
    offline = false;
    delete root.dataset.offline;
    say("");
    await loadState();
  }

  async function post(path, body) {
    return fetch(api(path), { method: "POST", headers: { "Content-Type": "application/json" },
                              body: JSON.stringify(body), cache: "no-store" });
  }

  async function loadState() {
    let response;
    try { response = await fetch(api("/state"), { cache: "no-store" }); } catch { return waitForServer(); }
    if (!response.ok) { say(await errorText(response)); return; }
    state = await response.json();
    $("confidence").hidden = !state.confidence;
    $("conf-keys").hidden = !state.confidence;
    $("nav-keys").hidden = !state.allow_revise;
    pos = state.current;  // resume where the rater stopped
    feedback = null;
    paused = false;
    render();
  }

  // -- a small, safe Markdown subset (headings, lists, paragraphs, **bold**, *italic*): DOM nodes, no HTML --

  function inline(parent, text) {
    const re = /(\*\*[^*]+\*\*|\*[^*]+\*|`[^`]+`)/g;
    let last = 0;
    for (const m of text.matchAll(re)) {
      parent.append(text.slice(last, m.index));
      const tok = m[0];
      const el = document.createElement(tok.startsWith("**") ? "strong" : tok.startsWith("`") ? "code" : "em");
      el.textContent = tok.replace(/^(\*\*|\*|`)|(\*\*|\*|`)$/g, "");
      parent.append(el);
      last = m.index + tok.length;
    }
    parent.append(text.slice(last));
  }

  function markdown(target, text) {
    target.replaceChildren();
    for (const block of (text || "").split(/\n\s*\n/)) {
      const lines = block.split("\n").filter((l) => l.trim());
      if (!lines.length) continue;
      if (lines.every((l) => /^\s*[-*]\s+/.test(l))) {
        const ul = document.createElement("ul");
        for (const l of lines) {
          const li = document.createElement("li");
          inline(li, l.replace(/^\s*[-*]\s+/, ""));
          ul.append(li);
        }
        target.append(ul);
      } else if (/^#{1,6}\s/.test(lines[0]) && lines.length === 1) {
        const h = document.createElement("h2");
        inline(h, lines[0].replace(/^#+\s*/, ""));
        target.append(h);
      } else {
        const p = document.createElement("p");
        lines.forEach((l, i) => { if (i) p.append(document.createElement("br")); inline(p, l); });
        target.append(p);
      }
    }
  }

  // -- screens --------------------------------------------------------------------------------------------

  function show(section) {
    for (const id of ["landing", "rating", "paused", "done"]) $(id).hidden = id !== section;
    root.dataset.screen = section;
  }

  function renderLanding() {
    show("landing");
    $("pause").hidden = true;
    $("who-name").textContent = state.rater;
    $("who-group").textContent = `(${state.group})`;
    markdown($("instructions"), state.instructions);
    const n = state.n - state.n_calibration;
    $("landing-keys").textContent =
      (state.n_calibration
        ? `First ${state.n_calibration} training images with the answer shown (not scored), then ` : "") +
      `${n} images. Answer each with Real or Fake (keys R / F)` +
      (state.confidence ? " and how sure you are (1–5)" : "") +
      (state.time_limit ? `; each image is visible for ${state.time_limit} s` : "") +
      ". Pause at any time; answers are saved as you go.";
    const hasConsent = Boolean(state.consent);
    $("consent-block").hidden = !hasConsent;
    $("consent-label").hidden = !hasConsent;
    if (hasConsent) markdown($("consent"), state.consent);
    $("start").disabled = hasConsent && !$("consent-check").checked;
  }

  function clearImage() {
    clearTimeout(hideTimer);
    clearTimeout(readyTimer);
    hideTimer = null;
    readyAt = Infinity;
    shownAt = null;
    const img = $("image");
    img.hidden = true;
    img.removeAttribute("src");
    delete img.dataset.image;
    if (objectUrl) { URL.revokeObjectURL(objectUrl); objectUrl = null; }
    $("timer").hidden = true;
    setWaiting(true);
  }

  function placeholder(text) {
    const p = $("placeholder");
    p.textContent = text;
    p.hidden = !text;
  }

  function setWaiting(waiting) {
    for (const id of ["real", "fake"]) {
      $(id).classList.toggle("waiting", waiting);
      $(id).disabled = waiting || feedback !== null;
    }
  }

  function render() {
    const scored = state.n - state.n_calibration;
    $("progress").max = Math.max(1, scored);
    $("progress").value = state.scored_answered;
    $("counter").textContent = `${state.scored_answered} / ${scored} answered`;
    clearImage();
    if (!state.started) { renderLanding(); return; }
    if (pos >= state.n) {
      show("done");
      $("pause").hidden = true;
      $("done-revise").hidden = !state.allow_revise;
      $("review").hidden = !state.allow_revise;
      return;
    }
    if (paused) { show("paused"); return; }
    show("rating");
    $("pause").hidden = Boolean(state.time_limit);
    const item = state.items[pos];
    const banner = $("calib-banner");
    banner.hidden = !item.calibration;
    if (item.calibration) {
      banner.textContent =
        `Training image ${pos + 1} of ${state.n_calibration}: not scored; the answer is shown after yours`;
    }
    confidence = item.confidence;
    for (const radio of document.querySelectorAll("input[name=confidence]")) {
      radio.checked = Number(radio.value) === confidence;
    }
    for (const id of ["real", "fake"]) $(id).classList.toggle("chosen", item.answer === id);
    $("yours").textContent = item.answer ? `Your answer: ${item.answer}` : "";
    $("back").disabled = !(state.allow_revise && pos > 0);
    $("next").disabled = !(pos < state.current);
    $("back").hidden = !state.allow_revise;
    $("next").hidden = !state.allow_revise;
    renderFeedback();
    root.dataset.position = String(pos);
    showImage(item);
  }

  function renderFeedback() {
    const box = $("feedback");
    box.hidden = feedback === null;
    if (feedback === null) return;
    box.classList.toggle("right", feedback.correct);
    box.classList.toggle("wrong", !feedback.correct);
    const verdict = feedback.correct ? "✓ Correct" : "✗ Not quite";
    $("feedback-text").textContent = `${verdict}: this image is ${feedback.truth}.`;
    setWaiting(true);
  }

  async function showImage(item) {
    const seq = ++loadSeq;
    placeholder("Loading…");
    let response;
    try {
      response = await fetch(api(`/image/${encodeURIComponent(item.id)}`), { cache: "no-store" });
    } catch { if (seq === loadSeq) waitForServer(); return; }
    if (seq !== loadSeq) return;
    if (!response.ok) {
      const timedOut = response.status === 410;
      placeholder(timedOut ? "The viewing time for this image is over; answer from memory."
                           : await errorText(response));
      if (timedOut) { readyAt = performance.now(); setWaiting(false); }
      return;
    }
    const blob = await response.blob();
    if (seq !== loadSeq) return;
    objectUrl = URL.createObjectURL(blob);
    const img = $("image");
    img.onload = () => {
      if (seq !== loadSeq) return;
      placeholder("");
      img.hidden = false;
      img.dataset.image = item.id;
      layoutImage();
      shownAt = performance.now();
      readyAt = shownAt + (state.min_display_ms || 0);
      readyTimer = setTimeout(() => { if (seq === loadSeq && feedback === null) setWaiting(false); },
                              state.min_display_ms || 0);
      if (state.time_limit) startTimer(seq);
    };
    img.src = objectUrl;
  }

  // -- the image at its own size (fit: never enlarged) or 1:1 and zoomed, panned by dragging -------------

  function layoutImage() {
    const img = $("image");
    const stage = $("stage");
    const w = img.naturalWidth || state.size;
    const h = img.naturalHeight || state.size;
    let scale;
    if (view.zoom) {
      scale = view.zoom;
    } else {
      scale = Math.min(1, stage.clientWidth / w, stage.clientHeight / h);
    }
    img.style.width = `${Math.floor(w * scale)}px`;
    img.style.height = `${Math.floor(h * scale)}px`;
    stage.classList.toggle("zoom", view.zoom > 0);
    $("zoom-in").hidden = $("zoom-out").hidden = !view.zoom;
    $("one-to-one").textContent = view.zoom ? "Fit" : "1:1 zoom";
    $("scale").textContent = `${Math.round(scale * 100)}%`;  // of the image's own pixels
  }

  function setZoom(zoom) {
    const stage = $("stage");
    const cx = (stage.scrollLeft + stage.clientWidth / 2) / Math.max(1, stage.scrollWidth);
    const cy = (stage.scrollTop + stage.clientHeight / 2) / Math.max(1, stage.scrollHeight);
    view.zoom = zoom;
    layoutImage();
    stage.scrollLeft = cx * stage.scrollWidth - stage.clientWidth / 2;
    stage.scrollTop = cy * stage.scrollHeight - stage.clientHeight / 2;
  }

  function toggleOneToOne() { setZoom(view.zoom ? 0 : 1); }
  function zoomBy(factor) { if (view.zoom) setZoom(Math.min(8, Math.max(1, view.zoom * factor))); }

  let drag = null;
  $("stage").addEventListener("pointerdown", (event) => {
    if (!view.zoom || event.target.closest("button")) return;
    drag = { x: event.clientX, y: event.clientY };
    $("stage").classList.add("dragging");
    $("stage").setPointerCapture(event.pointerId);
  });
  $("stage").addEventListener("pointermove", (event) => {
    if (!drag) return;
    $("stage").scrollLeft -= event.clientX - drag.x;
    $("stage").scrollTop -= event.clientY - drag.y;
    drag = { x: event.clientX, y: event.clientY };
  });
  for (const type of ["pointerup", "pointercancel"]) {
    $("stage").addEventListener(type, () => { drag = null; $("stage").classList.remove("dragging"); });
  }
  window.addEventListener("resize", () => { if (!$("image").hidden) layoutImage(); });

  function startTimer(seq) {
    const limit = state.time_limit;
    const end = performance.now() + limit * 1000;
    const timer = $("timer");
    timer.hidden = false;
    const tick = () => {
      if (seq !== loadSeq) return;
      const left = Math.max(0, (end - performance.now()) / 1000);
      if (left <= 0) {
        $("image").hidden = true;
        timer.textContent = "Time is up. Real or fake?";
        placeholder("");
        return;
      }
      timer.textContent = `${left.toFixed(1)} s`;
      hideTimer = setTimeout(tick, 100);
    };
    tick();
  }

  function setConfidence(value) {
    if (!state || !state.confidence || feedback !== null) return;
    confidence = value;
    for (const radio of document.querySelectorAll("input[name=confidence]")) {
      radio.checked = Number(radio.value) === value;
    }
    say("");
  }

  async function answer(value) {
    // never answer an image not yet seen for the minimum time, nor twice from one double click or key press
    if (!state || busy || paused || offline || feedback !== null || pos >= state.n || !state.started) return;
    if (performance.now() < readyAt) return;
    const item = state.items[pos];
    if (item.answer && !state.allow_revise) return;
    if (state.confidence && confidence == null) { say("Choose how sure you are (1–5) first."); return; }
    busy = true;
    setWaiting(true);
    try {
      const body = { image: item.id, answer: value, elapsed_ms: shownAt == null ? null :
                     Math.round(performance.now() - shownAt) };
      if (state.confidence) body.confidence = confidence;
      let response;
      try { response = await post("/answer", body); } catch { busy = false; return waitForServer(); }
      if (!response.ok) {
        say(await errorText(response));
        busy = false;
        await loadState();
        return;
      }
      state = await response.json();
      say("");
      if (state.feedback) {  // a training image: show its key and wait for Continue
        feedback = state.feedback;
        state.items[pos] = { ...state.items[pos], answer: value };
        $("yours").textContent = `Your answer: ${value}`;
        renderFeedback();
        $("continue").focus();
        return;
      }
      pos = Math.min(pos + 1, state.current);
      render();
    } finally {
      busy = false;
    }
  }

  function proceed() {
    if (feedback === null) return;
    feedback = null;
    pos = Math.min(pos + 1, state.current);
    if (pos === state.n_calibration) say("Training done: the scored images start now.");
    render();
  }

  function go(delta) {
    if (!state || busy || paused || feedback !== null || !state.started) return;
    const target = pos + delta;
    if (target < 0 || target > state.current || target > state.n) return;
    if (delta < 0 && !state.allow_revise) return;
    pos = target;
    say("");
    render();
  }

  async function start() {
    if (state.consent && !$("consent-check").checked) return;
    let response;
    try { response = await post("/start", {}); } catch { return waitForServer(); }
    if (!response.ok) { say(await errorText(response)); return; }
    state = await response.json();
    pos = state.current;
    render();
  }

  async function pause() {
    if (!state || paused || busy || feedback !== null || state.time_limit || pos >= state.n) return;
    if ($("rating").hidden) return;
    const item = state.items[pos];
    paused = true;
    loadSeq++;            // an image still loading is dropped
    clearImage();
    show("paused");
    try { await post("/pause", { image: item.id }); } catch { /* the server's clock then runs on; harmless */ }
    $("resume").focus();
  }

  function resume() {
    if (!paused) return;
    paused = false;
    render();
  }

  // a click answers once; focus then leaves the button, so Enter or Space cannot press it again
  function onClick(id, action) {
    $(id).addEventListener("click", (event) => {
      event.currentTarget.blur();
      $("stage").focus({ preventScroll: true });
      action();
    });
  }
  onClick("real", () => answer("real"));
  onClick("fake", () => answer("fake"));
  onClick("back", () => go(-1));
  onClick("next", () => go(+1));
  onClick("review", () => go(-1));
  onClick("continue", proceed);
  onClick("pause", pause);
  onClick("resume", resume);
  onClick("one-to-one", toggleOneToOne);
  onClick("zoom-in", () => zoomBy(2));
  onClick("zoom-out", () => zoomBy(0.5));
  $("start").addEventListener("click", start);
  $("consent-check").addEventListener("change", () => { $("start").disabled = !$("consent-check").checked; });
  for (const radio of document.querySelectorAll("input[name=confidence]")) {
    radio.addEventListener("change", () => { radio.blur(); setConfidence(Number(radio.value)); });
  }
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || !state) return;
    const key = event.key;
    if (key === "Enter" || key === " ") {  // never an answer: the answer buttons are pressed by R / F only
      if (event.target.closest && event.target.closest("#real, #fake")) event.preventDefault();
      if (feedback === null || event.repeat) return;
    }
    if (event.repeat) { if (/^[rRfF]$/.test(key)) event.preventDefault(); return; }
    if (!state.started || pos >= state.n) return;
    if (paused) { if (key === "p" || key === "P") { resume(); event.preventDefault(); } return; }
    if (feedback !== null) {
      if (key === "Enter" || key === " " || key === "ArrowRight") { proceed(); event.preventDefault(); }
      return;
    }
    if (key === "r" || key === "R") answer("real");
    else if (key === "f" || key === "F") answer("fake");
    else if (key === "ArrowLeft") go(-1);
    else if (key === "ArrowRight") go(+1);
    else if (/^[1-5]$/.test(key)) setConfidence(Number(key));
    else if (key === "z" || key === "Z") toggleOneToOne();
    else if (key === "+" || key === "=") zoomBy(2);
    else if (key === "-") zoomBy(0.5);
    else if (key === "p" || key === "P") pause();
    else return;
    event.preventDefault();
  });

  loadState().catch(() => say("Could not reach the study server."));
})();
