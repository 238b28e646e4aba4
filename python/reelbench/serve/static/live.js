// Live progress: poll the progress JSON every 2 s and update the cells marked
// with data-experiment (experiments page) or the #live banner (one experiment).
(function () {
  const rows = document.querySelectorAll('[data-experiment]');
  if (!rows.length) return;
  const one = document.getElementById('live');
  const url = one ? '/api/experiments/' + one.dataset.experiment + '/progress' : '/api/progress';
  const money = (x) => (x === null || x === undefined) ? '\u2014' : '$' + x.toFixed(4);
  const counts = (c) => Object.keys(c).map((k) => c[k] + ' ' + k).join(', ') || 'no runs';
  function show(e) {
    document.querySelectorAll('[data-experiment="' + e.id + '"]').forEach((row) => {
      const set = (field, text) => {
        const cell = row.querySelector('[data-field="' + field + '"]');
        if (cell && cell.textContent !== text) cell.textContent = text;
      };
      set('counts', counts(e.counts));
      set('finished', e.finished + ' / ' + e.total);
      set('spend', money(e.spend));
      const bar = row.querySelector('progress');
      if (bar) { bar.max = Math.max(e.total, 1); bar.value = e.finished; }
      const since = row.querySelector('[data-field="new"]');
      if (since) {
        const n = e.finished - Number(row.dataset.finished || e.finished);
        since.hidden = n <= 0;
        const count = since.querySelector('span');
        if (count) count.textContent = String(n);
      }
    });
  }
  let busy = false;
  function poll() {
    if (busy) return;
    busy = true;
    fetch(url, {headers: {Accept: 'application/json'}})
      .then((r) => r.ok ? r.json() : null)
      .then((data) => { if (data) (data.experiments || [data]).forEach(show); })
      .catch(() => {})
      .finally(() => { busy = false; });
  }
  window.setInterval(poll, 2000);
})();
