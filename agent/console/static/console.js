// The commissioning console's page script: tabs, status, live view + zone editor,
// walk test, self-test. Plain JavaScript, no framework, served by the box.
// One request in flight per item at a time, so a slow phone link never queues work on the box.
(function () {
  "use strict";
  const app = document.getElementById("app");
  if (!app) return; // the login page
  const T = JSON.parse(document.body.dataset.texts || "{}");
  const t = (s, vars) => {
    let out = T[s] || s;
    for (const [k, v] of Object.entries(vars || {})) out = out.replace("{" + k + "}", v);
    return out;
  };
  const csrf = app.dataset.csrf;
  const frameInterval = 1000 * parseFloat(app.dataset.frameInterval || "0.5");

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v);
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c));
    return node;
  }

  async function post(url, body) {
    const r = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body || {}),
    });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw Object.assign(new Error(data.message || data.error || r.status), { data });
    return data;
  }

  // ---- tabs ---------------------------------------------------------------------------
  let current = "status";
  function show(tab) {
    current = tab;
    document.querySelectorAll(".pane").forEach((p) => (p.hidden = p.id !== "pane-" + tab));
    document.querySelectorAll(".tab").forEach((b) => b.classList.toggle("on", b.dataset.tab === tab));
    if (tab === "cameras") loadCameras();
    if (tab === "walk") pollWalk();
  }
  document.querySelectorAll(".tab").forEach((b) => b.addEventListener("click", () => show(b.dataset.tab)));

  // ---- status -------------------------------------------------------------------------
  const statusBox = document.getElementById("status");
  function row(name, value) {
    return el("tr", {}, el("th", {}, name), el("td", {}, value));
  }
  function renderStatus(s) {
    const h = s.health || {};
    const up = (h.uplink || {}).connected;
    const table = el(
      "table",
      { class: "kv", id: "status-table" },
      row("MQTT", el("span", { class: up ? "ok" : "bad", id: "link" }, up ? t("Connected") : t("Not connected"))),
      row(t("Outbox"), JSON.stringify(h.outbox || {})),
      row(t("Dropped"), JSON.stringify(h.dropped || {})),
      row(t("Open alarms"), String((s.open_alarms || []).length)),
      row(t("Certificate"), s.certificate ? s.certificate.not_after || JSON.stringify(s.certificate) : t("None")),
      row(t("Disk free"), h.disk_free_bytes ? (h.disk_free_bytes / 2 ** 30).toFixed(1) + " GiB" : "?"),
      row(t("CPU temperature"), h.cpu_temp_c ? h.cpu_temp_c + " °C" : "?")
    );
    const zones = el("table", { class: "zones" }, el("tr", {}, el("th", {}, t("Zone")), el("th", {}, t("State")), el("th", {})));
    for (const z of s.zones || []) {
      const armed = z.state === "armed";
      if (z.mode === "24h") {
        zones.append(el("tr", {}, el("td", {}, z.name ? z.id + " " + z.name : z.id), el("td", { class: "zone-state", "data-zone": z.id }, t("24 h zone")), el("td", {})));
        continue;
      }
      const btn = el(
        "button",
        {
          class: "arm",
          id: "arm-" + z.id,
          onclick: async () => {
            btn.disabled = true;
            try {
              await post("/api/arm", { zones: [z.id], state: armed ? "disarmed" : "armed" });
            } catch (e) {
              alert(e.message);
            }
            refreshStatus();
          },
        },
        armed ? t("Disarm") : t("Arm")
      );
      zones.append(
        el("tr", {}, el("td", {}, z.name ? z.id + " " + z.name : z.id), el("td", { class: "zone-state", "data-zone": z.id }, armed ? t("Armed") : z.state === "disarmed" ? t("Disarmed") : z.state), el("td", {}, btn))
      );
    }
    statusBox.replaceChildren(table, zones);
  }
  let statusBusy = false;
  async function refreshStatus() {
    if (statusBusy) return;
    statusBusy = true;
    try {
      const r = await fetch("/api/status");
      if (r.status === 401) return location.assign("/login");
      if (r.ok) renderStatus(await r.json());
    } catch (e) {
      /* keep the last picture */
    } finally {
      statusBusy = false;
    }
  }

  // ---- cameras: live view and the zone editor ----------------------------------------
  const camerasBox = document.getElementById("cameras");
  let editors = [];
  async function loadCameras() {
    const r = await fetch("/api/cameras");
    if (!r.ok) return;
    const cams = await r.json();
    editors = cams.map(makeEditor);
    camerasBox.replaceChildren(...editors.map((e) => e.node));
  }

  function makeEditor(cam) {
    const state = {
      zones: cam.zones.map((z) => ({ id: z.id, name: z.name, polygon: z.polygon.map((p) => [...p]), labels: z.labels })),
      masks: cam.masks.map((m) => m.map((p) => [...p])),
      selected: 0, // index into zones, or -1 - index into masks
      drag: null,
    };
    const img = el("img", { class: "live", "data-camera": cam.id, alt: cam.id });
    const canvas = el("canvas", { class: "editor", "data-camera": cam.id });
    const picker = el("select", { class: "zone-pick", "data-camera": cam.id }, ...cam.zone_ids.map((z) => el("option", { value: z }, z)));
    const list = el("div", { class: "zone-list" });
    const labels = el("div", { class: "labels" });
    const result = el("p", { class: "save-result", "data-camera": cam.id });
    const common = ["person", "car", "truck", "bus", "motorcycle", "bicycle", "cow", "sheep", "horse", "dog"];
    const offered = common.filter((l) => cam.labels.includes(l)).concat(cam.labels.filter((l) => !common.includes(l)).slice(0, 6));

    function shape() {
      return state.selected >= 0 ? state.zones[state.selected]?.polygon : state.masks[-1 - state.selected];
    }
    function draw() {
      const w = (canvas.width = img.clientWidth || 320);
      const h = (canvas.height = img.clientHeight || 180);
      const ctx = canvas.getContext("2d");
      ctx.clearRect(0, 0, w, h);
      const poly = (pts, colour, chosen) => {
        if (!pts.length) return;
        ctx.beginPath();
        pts.forEach(([x, y], i) => (i ? ctx.lineTo(x * w, y * h) : ctx.moveTo(x * w, y * h)));
        ctx.closePath();
        ctx.strokeStyle = colour;
        ctx.lineWidth = chosen ? 3 : 1.5;
        ctx.stroke();
        if (chosen) pts.forEach(([x, y]) => ctx.fillRect(x * w - 4, y * h - 4, 8, 8));
      };
      state.masks.forEach((m, i) => poly(m, "#999", state.selected === -1 - i));
      state.zones.forEach((z, i) => poly(z.polygon, "#3c3", state.selected === i));
    }
    function renderList() {
      list.replaceChildren(
        ...state.zones.map((z, i) =>
          el("button", { class: "zone-item" + (i === state.selected ? " on" : ""), onclick: () => select(i) }, t("Zone") + " " + z.id + " (" + z.polygon.length + ")")
        ),
        ...state.masks.map((m, i) =>
          el("button", { class: "zone-item" + (-1 - i === state.selected ? " on" : ""), onclick: () => select(-1 - i) }, t("Mask") + " " + (i + 1))
        )
      );
      const z = state.zones[state.selected];
      labels.replaceChildren();
      if (z) {
        labels.append(el("p", {}, t("Labels that alarm (none ticked: every label)")));
        for (const l of offered) {
          const box = el("input", { type: "checkbox", value: l, checked: z.labels && z.labels.includes(l) ? "checked" : null });
          box.addEventListener("change", () => {
            const ticked = [...labels.querySelectorAll("input:checked")].map((b) => b.value);
            z.labels = ticked.length ? ticked : null;
          });
          labels.append(el("label", { class: "label" }, box, l));
        }
      }
      draw();
    }
    function select(i) {
      state.selected = i;
      renderList();
    }
    function at(ev) {
      const r = canvas.getBoundingClientRect();
      return [Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width)), Math.min(1, Math.max(0, (ev.clientY - r.top) / r.height))];
    }
    canvas.addEventListener("pointerdown", (ev) => {
      const pts = shape();
      if (!pts) return;
      const [x, y] = at(ev);
      const r = canvas.getBoundingClientRect();
      const near = pts.findIndex(([px, py]) => Math.hypot((px - x) * r.width, (py - y) * r.height) < 12);
      if (near >= 0) state.drag = near;
      else {
        pts.push([+x.toFixed(4), +y.toFixed(4)]);
        renderList();
      }
    });
    canvas.addEventListener("pointermove", (ev) => {
      if (state.drag === null) return;
      const [x, y] = at(ev);
      shape()[state.drag] = [+x.toFixed(4), +y.toFixed(4)];
      draw();
    });
    window.addEventListener("pointerup", () => (state.drag = null));

    const controls = el(
      "div",
      { class: "controls" },
      picker,
      el("button", {
        class: "new-zone", "data-camera": cam.id,
        onclick: () => {
          state.zones.push({ id: picker.value, name: null, polygon: [], labels: null });
          select(state.zones.length - 1);
        },
      }, t("New zone")),
      el("button", {
        class: "new-mask",
        onclick: () => {
          state.masks.push([]);
          select(-state.masks.length);
        },
      }, t("New mask")),
      el("button", {
        class: "delete-zone",
        onclick: () => {
          if (state.selected >= 0) state.zones.splice(state.selected, 1);
          else state.masks.splice(-1 - state.selected, 1);
          select(0);
        },
      }, t("Delete zone")),
      el("button", {
        class: "save-zones", "data-camera": cam.id,
        onclick: async () => {
          result.textContent = "…";
          try {
            const zones = state.zones.map((z) => ({ id: z.id, name: z.name || undefined, polygon: z.polygon, labels: z.labels || undefined }));
            const out = await post("/api/cameras/" + encodeURIComponent(cam.id) + "/zones", { zones, masks: state.masks });
            result.className = "save-result ok";
            result.textContent = t("Saved") + (out.restart_required && out.restart_required.length ? " (restart: " + out.restart_required.join(", ") + ")" : "");
          } catch (e) {
            result.className = "save-result bad";
            const d = (e.data && e.data.details) || [];
            result.textContent = t("Saving failed") + ": " + e.message + (d.length ? " — " + d.map((x) => x.path + ": " + x.message).join("; ") : "");
          }
        },
      }, t("Save zones"))
    );
    const stage = el("div", { class: "stage" }, img, canvas);
    const node = el("article", { class: "camera", id: "cam-" + cam.id }, el("h3", {}, cam.id), stage, el("p", { class: "hint" }, t("Click on the picture to add corners; drag a corner to move it.")), controls, list, labels, result);
    img.addEventListener("load", draw);
    let busy = false;
    function refresh() {
      if (busy || current !== "cameras" || !document.body.contains(img)) return;
      busy = true;
      const next = new Image();
      next.onload = () => {
        img.src = next.src;
        busy = false;
      };
      next.onerror = () => (busy = false);
      next.src = "/frame/" + encodeURIComponent(cam.id) + ".jpg?t=" + Date.now();
    }
    refresh();
    setInterval(refresh, frameInterval);
    renderList();
    return { node, draw };
  }
  window.addEventListener("resize", () => editors.forEach((e) => e.draw()));

  // ---- walk test ----------------------------------------------------------------------
  const walkBox = document.getElementById("walk");
  function renderWalk(w) {
    const items = el("ul", { class: "walk-items" });
    for (const i of w.items) {
      items.append(
        el("li", { class: "walk-item " + (i.seen_at ? "seen" : "unseen"), "data-source": i.source }, i.source + " · " + i.kind + " · " + i.what + (i.zone ? " · " + i.zone : "") + " — " + (i.seen_at ? t("Seen") : t("Not seen yet")))
      );
    }
    const button = w.running
      ? el("button", { id: "walk-finish", onclick: async () => renderWalk(await post("/api/walk/finish")) }, t("Finish walk test"))
      : el("button", { id: "walk-start", onclick: async () => renderWalk(await post("/api/walk/start")) }, t("Start walk test"));
    const parts = [button, items];
    if (!w.running && w.ended_at) {
      parts.push(el("p", { id: "walk-summary" }, t("Walk test finished: {seen} of {total} sensors seen", { seen: w.seen.length, total: w.items.length })));
      if (w.not_seen.length) parts.push(el("p", { class: "bad", id: "walk-missing" }, t("Not seen: {names}", { names: w.not_seen.join(", ") })));
    }
    walkBox.replaceChildren(...parts);
  }
  let walkBusy = false;
  async function pollWalk() {
    if (walkBusy) return;
    walkBusy = true;
    try {
      const r = await fetch("/api/walk");
      if (r.ok) renderWalk(await r.json());
    } finally {
      walkBusy = false;
    }
  }

  // ---- self-test ----------------------------------------------------------------------
  const selftestBox = document.getElementById("selftest");
  const runButton = el("button", { id: "selftest-run" }, t("Run self-test"));
  const table = el("table", { id: "selftest-table", class: "results" });
  const download = el("a", { id: "selftest-download", href: "/api/selftest/report.json", hidden: "hidden" }, t("Download report"));
  runButton.addEventListener("click", async () => {
    runButton.disabled = true;
    runButton.textContent = t("Running…");
    try {
      const report = await post("/api/selftest");
      table.replaceChildren(
        el("tr", {}, el("th", {}, t("Check")), el("th", {}, t("Result")), el("th", {}, t("Reason"))),
        ...report.results.map((r) => el("tr", { class: r.status }, el("td", {}, r.kind + " " + r.name), el("td", { class: "result" }, t(r.status)), el("td", {}, r.reason)))
      );
      download.hidden = false;
    } catch (e) {
      table.replaceChildren(el("tr", {}, el("td", { class: "bad" }, e.message)));
    } finally {
      runButton.disabled = false;
      runButton.textContent = t("Run self-test");
    }
  });
  selftestBox.append(runButton, table, download);

  // ---- timers -------------------------------------------------------------------------
  show("status");
  refreshStatus();
  setInterval(() => {
    if (current === "status") refreshStatus();
    if (current === "walk") pollWalk();
  }, 1000);
})();
