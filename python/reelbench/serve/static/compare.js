// The compare page: 2-4 players kept in step. Play, pause, seek, frame steps,
// loop and speed apply to all; a seek on any player moves the others with it.
// Keys: space play/pause; left/right arrow or , and . one frame back/forward.
(function () {
  const root = document.getElementById('compare');
  if (!root) return;
  const videos = Array.prototype.slice.call(root.querySelectorAll('video.cmp'));
  if (!videos.length) return;
  const fps = Number(root.dataset.fps) || 24;
  const frame = 1 / fps;
  const lead = videos[0];
  const $ = (id) => document.getElementById(id);
  const playButton = $('play'), seek = $('seek'), speed = $('speed'), loop = $('loop');
  const clock = $('clock');

  // A seek made here (to follow another player) must not be followed back.
  function moveTo(t, except) {
    videos.forEach((v) => {
      if (v === except) return;
      const d = isFinite(v.duration) ? v.duration : t;
      const target = Math.max(0, Math.min(t, d));
      if (Math.abs(v.currentTime - target) > 1e-3) {
        v.dataset.following = '1';
        v.currentTime = target;
      }
    });
  }
  function playing() { return videos.some((v) => !v.paused && !v.ended); }
  function play() {
    moveTo(lead.currentTime, lead);
    videos.forEach((v) => { const p = v.play(); if (p && p.catch) p.catch(() => {}); });
  }
  function pause() { videos.forEach((v) => v.pause()); moveTo(lead.currentTime, lead); }
  function toggle() { if (playing()) pause(); else play(); }
  function step(n) {
    pause();
    const t = Math.max(0, lead.currentTime + n * frame);
    videos.forEach((v) => { v.dataset.following = '1'; v.currentTime = t; });
  }
  function showTime() {
    const t = lead.currentTime;
    if (clock) clock.textContent = t.toFixed(3) + ' s \u00b7 frame ' + Math.round(t * fps);
    if (seek && isFinite(lead.duration)) { seek.max = String(lead.duration); seek.value = String(t); }
    if (playButton) playButton.textContent = playing() ? 'Pause (space)' : 'Play (space)';
  }

  videos.forEach((v) => {
    v.addEventListener('play', () => { if (!playing() || videos.every((o) => !o.paused)) return; play(); });
    v.addEventListener('pause', () => { if (videos.some((o) => !o.paused)) pause(); showTime(); });
    v.addEventListener('seeked', () => {
      if (v.dataset.following === '1') { delete v.dataset.following; showTime(); return; }
      moveTo(v.currentTime, v);
      showTime();
    });
    v.addEventListener('timeupdate', showTime);
  });
  // While playing, pull any player that drifts more than a frame back to the lead.
  lead.addEventListener('timeupdate', () => {
    if (lead.paused) return;
    videos.forEach((v) => {
      if (v !== lead && !v.seeking && Math.abs(v.currentTime - lead.currentTime) > frame) {
        v.dataset.following = '1';
        v.currentTime = lead.currentTime;
      }
    });
  });

  if (playButton) playButton.addEventListener('click', toggle);
  const back = $('back'), fwd = $('forward');
  if (back) back.addEventListener('click', () => step(-1));
  if (fwd) fwd.addEventListener('click', () => step(1));
  if (seek) seek.addEventListener('input', () => moveTo(Number(seek.value), null));
  if (speed) {
    speed.addEventListener('change', () => {
      videos.forEach((v) => { v.playbackRate = Number(speed.value); });
    });
  }
  if (loop) {
    const apply = () => videos.forEach((v) => { v.loop = loop.checked; });
    loop.addEventListener('change', apply);
    apply();
  }
  document.addEventListener('keydown', (e) => {
    const tag = e.target.tagName;
    if (tag === 'INPUT' || tag === 'SELECT' || tag === 'TEXTAREA' || e.ctrlKey || e.metaKey) return;
    if (e.key === ' ') { e.preventDefault(); toggle(); }
    else if (e.key === 'ArrowRight' || e.key === '.') { e.preventDefault(); step(1); }
    else if (e.key === 'ArrowLeft' || e.key === ',') { e.preventDefault(); step(-1); }
  });
  showTime();
})();
