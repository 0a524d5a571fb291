// Periodic refresh of status and live frames; bounded to one request in flight per item.
(function () {
  const status = document.getElementById("status");
  if (!status) return;
  async function tick() {
    try {
      const r = await fetch("/api/status");
      if (r.ok) status.textContent = JSON.stringify(await r.json(), null, 1);
    } catch (e) { /* keep last */ }
    document.querySelectorAll("img.live").forEach(function (img) {
      img.src = "/frame/" + img.dataset.camera + ".jpg?t=" + Date.now();
    });
  }
  tick();
  setInterval(tick, 1000);
})();
