// The rating page of a dermsynth visual Turing test. All state lives on the server: this page only shows
// the rater's current image (fetched by its opaque id), sends each answer as it is given, and moves on.
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
  let hideTimer = null;
  let objectUrl = null;
  let busy = false;
  let ready = false;     // the image on screen has been shown (or cannot be): only then are answers taken
  let loadSeq = 0;       // drops image responses that arrive after the rater moved on

  function say(text) { $("message").textContent = text || ""; }

  async function errorText(response) {
    try { return (await response.json()).error || response.statusText; } catch { return response.statusText; }
  }

  async function loadState() {
    const response = await fetch(api("/state"), { cache: "no-store" });
    if (!response.ok) { say(await errorText(response)); return; }
    state = await response.json();
    $("instructions").textContent = state.instructions;
    $("confidence").hidden = !state.confidence;
    $("conf-keys").hidden = !state.confidence;
    $("nav-keys").hidden = !state.allow_revise;
    pos = state.current;  // resume where the rater stopped
    render();
  }

  function clearImage() {
    clearTimeout(hideTimer);
    hideTimer = null;
    ready = false;
    shownAt = null;
    const img = $("image");
    img.hidden = true;
    img.removeAttribute("src");
    delete img.dataset.image;
    if (objectUrl) { URL.revokeObjectURL(objectUrl); objectUrl = null; }
    $("timer").hidden = true;
  }

  function placeholder(text) {
    const p = $("placeholder");
    p.textContent = text;
    p.hidden = !text;
  }

  function render() {
    const n = state.n;
    $("progress").max = n;
    $("progress").value = state.answered;
    $("counter").textContent = `${state.answered} / ${n} answered`;
    clearImage();
    if (pos >= n) {
      $("rating").hidden = true;
      $("done").hidden = false;
      $("done-revise").hidden = !state.allow_revise;
      $("review").hidden = !state.allow_revise;
      return;
    }
    $("rating").hidden = false;
    $("done").hidden = true;
    const item = state.items[pos];
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
    root.dataset.position = String(pos);
    showImage(item);
  }

  async function showImage(item) {
    const seq = ++loadSeq;
    placeholder("Loading…");
    const response = await fetch(api(`/image/${encodeURIComponent(item.id)}`), { cache: "no-store" });
    if (seq !== loadSeq) return;
    if (!response.ok) {
      placeholder(response.status === 410 ? "The viewing time for this image is over; answer from memory."
                                          : await errorText(response));
      ready = response.status === 410;
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
      shownAt = performance.now();
      ready = true;
      if (state.time_limit) startTimer(seq);
    };
    img.src = objectUrl;
  }

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
    if (!state || !state.confidence) return;
    confidence = value;
    for (const radio of document.querySelectorAll("input[name=confidence]")) {
      radio.checked = Number(radio.value) === value;
    }
    say("");
  }

  async function answer(value) {
    if (!state || busy || !ready || pos >= state.n) return;  // never answer an image not yet seen
    const item = state.items[pos];
    if (item.answer && !state.allow_revise) return;
    if (state.confidence && confidence == null) { say("Choose how sure you are (1–5) first."); return; }
    busy = true;
    try {
      const body = { image: item.id, answer: value, elapsed_ms: shownAt == null ? null :
                     Math.round(performance.now() - shownAt) };
      if (state.confidence) body.confidence = confidence;
      const response = await fetch(api("/answer"), {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      if (!response.ok) {
        say(await errorText(response));
        await loadState();
        return;
      }
      state = await response.json();
      say("");
      pos = Math.min(pos + 1, state.current);
      render();
    } catch (err) {
      say("Could not save the answer (connection lost?). Try again.");
    } finally {
      busy = false;
    }
  }

  function go(delta) {
    if (!state || busy) return;
    const target = pos + delta;
    if (target < 0 || target > state.current || target > state.n) return;
    if (delta < 0 && !state.allow_revise) return;
    pos = target;
    say("");
    render();
  }

  $("real").addEventListener("click", () => answer("real"));
  $("fake").addEventListener("click", () => answer("fake"));
  $("back").addEventListener("click", () => go(-1));
  $("next").addEventListener("click", () => go(+1));
  $("review").addEventListener("click", () => go(-1));
  for (const radio of document.querySelectorAll("input[name=confidence]")) {
    radio.addEventListener("change", () => setConfidence(Number(radio.value)));
  }
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const key = event.key;
    if (key === "r" || key === "R") answer("real");
    else if (key === "f" || key === "F") answer("fake");
    else if (key === "ArrowLeft") go(-1);
    else if (key === "ArrowRight") go(+1);
    else if (/^[1-5]$/.test(key)) setConfidence(Number(key));
    else return;
    event.preventDefault();
  });

  loadState().catch(() => say("Could not reach the study server."));
})();
