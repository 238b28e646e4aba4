// The judge page: vote with keys, and time how long the pair was on screen.
document.addEventListener('keydown', (e) => {
  if (e.target.tagName === 'INPUT' || e.target.tagName === 'TEXTAREA') return;
  const keys = {ArrowLeft: 'left', ArrowRight: 'right', ArrowDown: 'tie', ArrowUp: 'both_bad',
                '1': 'left', '2': 'right', '3': 'tie', '4': 'both_bad'};
  const outcome = keys[e.key];
  const button = outcome && document.querySelector('button[value="' + outcome + '"]');
  if (button) { e.preventDefault(); button.click(); }
});
const shown = document.querySelector('input[name="shown_at"]');
if (shown) shown.value = String(Date.now());
const form = document.querySelector('form.vote');
if (form) form.addEventListener('submit', () => {
  const s = form.querySelector('input[name="seconds"]');
  if (s && shown) s.value = String((Date.now() - Number(shown.value)) / 1000);
});
