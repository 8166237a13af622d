// The dashboard's live part: one WebSocket (/ws/dashboard/), a chart per device drawn as an
// SVG polyline, and the fan buttons (POST /api/devices/<id>/command/). No library, no CDN.
"use strict";

(() => {
  const POINTS = Number(document.body.dataset.chartPoints) || 60;
  const WIDTH = 300, HEIGHT = 80, PAD = 6;
  const devices = document.getElementById("devices");
  const template = document.getElementById("device-template");
  const series = new Map(); // device_id -> [{celsius, received}], oldest first
  const sentAt = new Map(); // ref -> when this page sent the command (ms), for the round trip

  const lock = (el, locked) => el.querySelectorAll("button.command").forEach((b) => (b.disabled = locked));
  const cards = new Map(); // device_id -> its card, found once (cards stay until a reload)
  const cardOf = (id) => {
    let el = cards.get(id);
    if (!el && (el = devices.querySelector(`[data-device="${CSS.escape(id)}"]`))) cards.set(id, el);
    return el;
  };

  function card(id) {
    let el = cardOf(id);
    if (el) return el;
    el = template.content.firstElementChild.cloneNode(true);
    el.dataset.device = id;
    cards.set(id, el);
    el.querySelector(".name").textContent = id;
    const after = [...devices.querySelectorAll("[data-device]")].find((o) => o.dataset.device > id);
    devices.insertBefore(el, after || devices.querySelector(".empty"));
    devices.querySelector(".empty").hidden = true;
    loadHistory(id);
    countOnline();
    return el;
  }

  // -- the chart ------------------------------------------------------------------------------

  function draw(id) {
    const points = series.get(id) || [];
    const el = cardOf(id);
    if (!el || !points.length) return;
    const values = points.map((p) => p.celsius);
    let low = Math.min(...values), high = Math.max(...values);
    const range = el.querySelector(".range");
    range.textContent = `${low.toFixed(1)} – ${high.toFixed(1)} °C, last ${points.length} readings`;
    if (high - low < 1) [low, high] = [(low + high) / 2 - 0.5, (low + high) / 2 + 0.5];
    const step = WIDTH / Math.max(points.length - 1, 1);
    const xy = points.map((p, i) => [
      (i * step).toFixed(1),
      (HEIGHT - PAD - ((p.celsius - low) / (high - low)) * (HEIGHT - 2 * PAD)).toFixed(1),
    ]);
    const line = xy.map((p) => p.join(",")).join(" ");
    el.querySelector("polyline").setAttribute("points", line);
    const last = xy[xy.length - 1][0];
    el.querySelector(".area").setAttribute("d", `M0,${HEIGHT} L${line.replaceAll(" ", " L")} L${last},${HEIGHT} Z`);
  }

  async function loadHistory(id) {
    const response = await fetch(`/api/devices/${encodeURIComponent(id)}/readings/?limit=${POINTS}`);
    if (!response.ok) return;
    const readings = await response.json();
    const history = readings.map((r) => ({ celsius: r.celsius, received: r.received }));
    const newest = history.length ? history[history.length - 1].received : 0;
    // Readings that came over the socket while this was loading go after the history.
    const live = (series.get(id) || []).filter((p) => p.received > newest);
    series.set(id, history.concat(live).slice(-POINTS));
    if (readings.length && !live.length) show(id, readings[readings.length - 1]);
    draw(id);
  }

  // -- events ---------------------------------------------------------------------------------

  const number = (value, digits, unit) => (typeof value === "number" ? value.toFixed(digits) + unit : "–");

  function show(id, reading) {
    const el = card(id);
    el.querySelector(".celsius").textContent = reading.celsius.toFixed(2);
    el.querySelector(".humidity").textContent = number(reading.humidity, 0, " %");
    el.querySelector(".battery").textContent = number(reading.battery, 0, " %");
    el.querySelector(".fan").textContent = reading.fan || "–";
    seen(el, reading.received);
  }

  function seen(el, ms) {
    const time = el.querySelector(".last-seen");
    time.dataset.ms = ms;
    time.setAttribute("datetime", new Date(ms).toISOString());
    time.textContent = ago(ms);
  }

  function ago(ms) {
    const seconds = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (seconds < 5) return "just now";
    if (seconds < 60) return `${seconds} s ago`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
    return new Date(ms).toLocaleString();
  }

  function countOnline() {
    document.querySelector(".count-online").textContent =
      devices.querySelectorAll('.status[data-online="true"]').length;
    document.querySelector(".count-all").textContent = devices.querySelectorAll("[data-device]").length;
  }

  const handlers = {
    // The server batches readings (every device's, at most one message per 20 ms per server
    // process; telemetry/live.py): the page's work then follows the screen, not the fleet.
    // Every reading joins its chart's series; each card is shown and drawn once per batch.
    readings(event) {
      const latest = new Map();
      for (const reading of event.readings) {
        const points = series.get(reading.device_id) || [];
        points.push({ celsius: reading.celsius, received: reading.received });
        if (points.length > POINTS) points.splice(0, points.length - POINTS);
        series.set(reading.device_id, points);
        latest.set(reading.device_id, reading);
      }
      for (const [id, reading] of latest) {
        show(id, reading);
        draw(id);
      }
    },
    status(event) {
      const el = card(event.device_id);
      const status = el.querySelector(".status");
      status.dataset.online = String(event.online);
      status.textContent = event.online ? "online" : "offline";
      if (event.last_seen) seen(el, Date.parse(event.last_seen));
      countOnline();
    },
    command(event) {
      const el = card(event.device_id);
      // The socket may tell of the command (and even of its ack) before the POST's response
      // does: a click of this page is matched here, the device's next command event.
      if (el.dataset.clicked) sentAt.set(event.ref, Number(el.dataset.clicked));
      delete el.dataset.clicked;
      const sent = el.querySelector(".sent");
      sent.classList.remove("error");
      sent.dataset.ref = event.ref;
      sent.textContent = `sent fan ${event.fan}…`;
    },
    ack(event) {
      const el = card(event.device_id);
      const sent = el.querySelector(".sent");
      if (sent.dataset.ref === event.ref) sent.textContent = "";
      const ack = el.querySelector(".ack");
      const started = sentAt.get(event.ref);
      sentAt.delete(event.ref);
      ack.dataset.ref = event.ref;
      ack.textContent = `fan ${event.fan}` + (started ? ` · acknowledged in ${Date.now() - started} ms` : " · acknowledged");
      el.querySelector(".fan").textContent = event.fan;
      lock(el, false);
    },
  };

  // -- the socket -----------------------------------------------------------------------------

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/dashboard/`);
    socket.addEventListener("open", () => (document.body.dataset.ws = "open"));
    socket.addEventListener("message", (message) => {
      const event = JSON.parse(message.data);
      handlers[event.type]?.(event);
    });
    socket.addEventListener("close", () => {
      document.body.dataset.ws = "closed";
      setTimeout(connect, 2000); // the bridge restarting, say; reload to catch up on history
    });
  }

  // -- commands -------------------------------------------------------------------------------

  devices.addEventListener("click", async (click) => {
    const button = click.target.closest("button.command");
    if (!button) return;
    const el = button.closest("[data-device]");
    const sent = el.querySelector(".sent");
    lock(el, true); // until the device acknowledges, or for 5 s if it does not
    el.dataset.clicked = Date.now();
    setTimeout(() => lock(el, false), 5000);
    try {
      const response = await fetch(`/api/devices/${encodeURIComponent(el.dataset.device)}/command/`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ fan: button.dataset.fan }),
      });
      const body = await response.json();
      if (!response.ok) throw new Error(body.error || response.statusText);
    } catch (error) {
      lock(el, false);
      delete el.dataset.clicked;
      sent.classList.add("error");
      sent.textContent = `not sent: ${error.message}`;
    }
  });

  setInterval(() => {
    document.querySelectorAll(".last-seen[data-ms]").forEach((t) => (t.textContent = ago(Number(t.dataset.ms))));
  }, 1000);

  document.querySelectorAll(".last-seen[datetime]").forEach((t) => (t.dataset.ms = Date.parse(t.getAttribute("datetime"))));
  devices.querySelectorAll("[data-device]").forEach((el) => loadHistory(el.dataset.device));
  connect();
})();
