// Refreshes the parts of a page that show live counters: an element with
// data-refresh="URL" gets URL's HTML every 2 s (data-every: that many
// ms, which the server sets where reading the taps is slow), an image with
// data-reload="URL" is fetched again every 5 s. Without JavaScript the
// page shows the same, as of its loading.
"use strict";
for (const el of document.querySelectorAll("[data-refresh]")) {
  setInterval(async () => {
    try {
      const r = await fetch(el.dataset.refresh, { credentials: "same-origin" });
      if (r.ok) el.innerHTML = await r.text();
    } catch (e) { /* the next one may work */ }
  }, Number(el.dataset.every) || 2000);
}
for (const img of document.querySelectorAll("img[data-reload]")) {
  setInterval(() => { img.src = img.dataset.reload + "?t=" + Date.now(); }, 5000);
}
