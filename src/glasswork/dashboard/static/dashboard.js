// Glasswork dashboard: live refresh of [data-refresh] regions, "select all" boxes, and a
// question before a [data-confirm] form is sent.
// No build step and no framework: the server renders every fragment (escaped) as HTML.
"use strict";

for (const region of document.querySelectorAll("[data-refresh]")) {
  const every = Math.max(1, Number(region.dataset.every) || 5) * 1000;
  setInterval(async () => {
    if (document.hidden) return;
    try {
      const response = await fetch(region.dataset.refresh, { credentials: "same-origin" });
      if (response.ok) region.innerHTML = await response.text();
    } catch (error) {
      // The server is restarting or unreachable: keep showing the last counts.
    }
  }, every);
}

for (const box of document.querySelectorAll("[data-select-all]")) {
  box.addEventListener("change", () => {
    for (const other of box.form.querySelectorAll(`input[name="${box.dataset.selectAll}"]`)) {
      other.checked = box.checked;
    }
  });
}

for (const form of document.querySelectorAll("form[data-confirm]")) {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
}
