// Ferry dashboard. Reads the JSON API (docs/API.md) and builds the page
// with DOM calls only: every value that comes from a run is set with
// textContent (or as a form value), never parsed as HTML. No dependencies.
'use strict';

(function () {
  const TOKEN_KEY = 'ferry-token';
  const POLL_MS = 2000;
  const CUT = 4096; // characters of a payload shown before "download"
  const FINAL = ['completed', 'failed', 'cancelled'];

  // ---------------------------------------------------------------- helpers

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = String(v);
      else if (k === 'data') Object.assign(e.dataset, v);
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  const byId = (id) => document.getElementById(id);

  function runHref(id) {
    return '/runs/' + encodeURIComponent(id);
  }

  function duration(us) {
    if (us === null || us === undefined || us < 0) return '-';
    if (us < 1000) return us + ' µs';
    const ms = us / 1000;
    if (ms < 1000) return ms.toFixed(ms < 10 ? 1 : 0) + ' ms';
    const s = ms / 1000;
    if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + ' s';
    const m = Math.floor(s / 60);
    if (m < 60) return m + ' m ' + String(Math.floor(s % 60)).padStart(2, '0') + ' s';
    const h = Math.floor(m / 60);
    if (h < 48) return h + ' h ' + String(m % 60).padStart(2, '0') + ' m';
    return Math.floor(h / 24) + ' d ' + String(h % 24).padStart(2, '0') + ' h';
  }

  // "in 3 h 05 m" or "12 m 40 s ago", to the second.
  function relative(us) {
    if (!us) return '';
    const d = us - nowUs();
    const secs = Math.round(Math.abs(d) / 1e6);
    if (secs < 1) return 'now';
    const text = duration(secs * 1e6);
    return d > 0 ? 'in ' + text : text + ' ago';
  }

  // An instant as a clock in time zone `tz` reads it, or '' for a zone
  // this browser does not know.
  function inZone(us, tz) {
    try {
      const f = new Intl.DateTimeFormat('sv-SE', {
        timeZone: tz, year: 'numeric', month: '2-digit', day: '2-digit',
        hour: '2-digit', minute: '2-digit', second: '2-digit',
      });
      return f.format(new Date(us / 1000)) + ' ' + tz;
    } catch (_) {
      return '';
    }
  }

  function bytes(n) {
    if (n >= 1 << 30 && n % (1 << 30) === 0) return n / (1 << 30) + ' GiB';
    if (n >= 1 << 20) return +(n / (1 << 20)).toFixed(1) + ' MiB';
    if (n >= 1 << 10) return +(n / (1 << 10)).toFixed(1) + ' KiB';
    return n + ' B';
  }

  function when(us) {
    if (!us) return '-';
    const d = new Date(us / 1000);
    const p = (n) => String(n).padStart(2, '0');
    return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + ' ' +
      p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
  }

  function nowUs() {
    return Date.now() * 1000;
  }

  function runDuration(run) {
    if (!run.started_at) return null;
    return (run.finished_at || nowUs()) - run.started_at;
  }

  function thousands(n) {
    return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  }

  function pretty(text) {
    if (text === null || text === undefined) return '';
    try {
      return JSON.stringify(JSON.parse(text), null, 2);
    } catch (_) {
      return String(text);
    }
  }

  function parse(text) {
    try {
      return JSON.parse(text);
    } catch (_) {
      return undefined;
    }
  }

  function badge(status) {
    return el('span', { class: 'badge s-' + status, text: status });
  }

  function download(name, text) {
    const url = URL.createObjectURL(new Blob([text], { type: 'application/json' }));
    const a = el('a', { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  // A blob through the API (with the token when there is one).
  async function downloadBlob(ref) {
    const headers = {};
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = 'Bearer ' + token;
    const resp = await fetch('/v1/blobs/' + encodeURIComponent(ref), { headers, credentials: 'omit', cache: 'no-store' });
    if (!resp.ok) {
      alert('Cannot download ' + ref + ': HTTP ' + resp.status);
      return;
    }
    const pdf = (resp.headers.get('content-type') || '').startsWith('application/pdf');
    const url = URL.createObjectURL(await resp.blob());
    const a = el('a', { href: url, download: ref.slice(7, 23) + (pdf ? '.pdf' : '.bin') });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  // A payload: pretty JSON in a <pre>, collapsible, cut when long with a
  // link that downloads the whole of it.
  function payload(label, text, opts) {
    const o = opts || {};
    const full = pretty(text);
    const shown = full.length > CUT ? full.slice(0, CUT) + '\n…' : full;
    const summary = el('summary', {}, label, el('span', { class: 'muted', text: ' ' + sizeOf(text) }));
    const d = el('details', { class: 'payload ' + (o.cls || ''), data: { k: o.key || label } }, summary);
    if (o.open) d.open = true;
    d.append(el('pre', { class: 'json', text: shown }));
    // Blob references (a PDF a step stored with put-blob): download links.
    const refs = [...new Set(String(text || '').match(/sha256:[0-9a-f]{64}/g) || [])];
    for (const ref of refs.slice(0, 10)) {
      d.append(el('p', { class: 'blob' },
        el('a', { href: '#', class: 'download', onclick: (ev) => { ev.preventDefault(); downloadBlob(ref); } },
          'Download blob ' + ref.slice(0, 19) + '…')));
    }
    if (full.length > CUT) {
      const name = (o.file || label).replace(/[^A-Za-z0-9._-]+/g, '_') + '.json';
      d.append(
        el('p', { class: 'cut' }, 'Showing ' + thousands(CUT) + ' of ' + thousands(full.length) + ' characters. ',
          el('a', { href: '#', class: 'download', onclick: (ev) => { ev.preventDefault(); download(name, full); } },
            'Download the full JSON')));
    }
    return d;
  }

  function sizeOf(text) {
    const n = text ? text.length : 0;
    return n < 1024 ? '(' + n + ' B)' : '(' + (n / 1024).toFixed(1) + ' KiB)';
  }

  // ---------------------------------------------------------------- API and token

  class Unauthorized extends Error {}

  async function api(path, options) {
    const o = options || {};
    const headers = { Accept: 'application/json' };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = 'Bearer ' + token;
    if (o.body !== undefined) headers['Content-Type'] = 'application/json';
    const resp = await fetch(path, {
      method: o.method || 'GET',
      headers,
      body: o.body === undefined ? undefined : JSON.stringify(o.body),
      credentials: 'omit',
      cache: 'no-store',
    });
    let data = null;
    try {
      data = await resp.json();
    } catch (_) {
      data = null;
    }
    if (resp.status === 401) throw new Unauthorized((data && data.error && data.error.message) || 'unauthorized');
    if (!resp.ok) {
      throw new Error((data && data.error && data.error.message) || 'HTTP ' + resp.status);
    }
    return data;
  }

  let authorised = true;

  // Without the token, nothing the API said before stays on the page.
  function refused(message) {
    authorised = false;
    byId('content').hidden = true;
    wipe();
    byId('login').hidden = false;
    const had = !!sessionStorage.getItem(TOKEN_KEY);
    notice(had ? 'The API refused the token: ' + message : 'Refused: ' + message, 'error');
    byId('logout').hidden = !had;
  }

  function granted() {
    if (!authorised || !byId('login').hidden) {
      authorised = true;
      byId('login').hidden = true;
      byId('content').hidden = false;
    }
    byId('logout').hidden = !sessionStorage.getItem(TOKEN_KEY);
  }

  function notice(text, kind) {
    const n = byId('notice');
    n.textContent = text || '';
    n.className = 'notice ' + (kind || '');
    n.hidden = !text;
  }

  let wipe = () => {};
  let refresh = async () => {};

  function setupLogin() {
    byId('login-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const t = byId('token').value.trim();
      if (!t) return;
      sessionStorage.setItem(TOKEN_KEY, t);
      byId('token').value = '';
      notice('');
      authorised = true;
      byId('login').hidden = true;
      byId('content').hidden = false;
      refresh();
    });
    byId('logout').addEventListener('click', () => {
      sessionStorage.removeItem(TOKEN_KEY);
      location.reload();
    });
  }

  async function guarded(fn) {
    try {
      await fn();
      granted();
      return true;
    } catch (e) {
      if (e instanceof Unauthorized) refused(e.message);
      else notice(e.message, 'error');
      return false;
    }
  }

  // Polls `tick` every `ms` (2 s by default), one request at a time,
  // paused while refused.
  function poll(tick, ms) {
    let busy = false;
    const go = async () => {
      if (busy || !authorised) return;
      busy = true;
      try {
        await tick();
      } finally {
        busy = false;
      }
    };
    setInterval(go, ms || POLL_MS);
    return go;
  }

  // Deployments by hash, for versions and fuel budgets.
  let deployments = [];
  async function loadDeployments() {
    const d = await api('/v1/deployments');
    deployments = (d && d.deployments) || [];
  }

  // The version of deployment `name` with this component (the newest, if
  // several share it); without a name, any deployment's.
  function deploymentOf(hash, name) {
    return deployments.find((d) => d.hash === hash && (name === undefined || d.name === name));
  }

  function activeOf(name) {
    return deployments.find((d) => d.name === name && d.active);
  }

  // Step calls and retries from a journal, as the runs list counts them.
  function stepCounts(journal) {
    const attempts = journal.filter((e) => e.kind === 'step' && e.child === 0 && e.attempt >= 1);
    return { steps: attempts.filter((e) => e.attempt === 1).length, retries: attempts.filter((e) => e.attempt > 1).length };
  }

  // ---------------------------------------------------------------- runs list

  function runsPage() {
    const q = new URLSearchParams(location.search);
    const status = byId('status-filter');
    const workflow = byId('workflow-filter');
    const search = byId('search');
    status.value = q.get('status') || '';
    search.value = q.get('q') || '';
    let wanted = q.get('workflow') || '';
    const limit = String(Math.min(Math.max(parseInt(q.get('limit') || '50', 10) || 50, 1), 1000));
    let cursors = [null]; // the `before` of each page seen
    let next = null;
    let last = '';

    wipe = () => {
      byId('runs-body').replaceChildren();
      for (const o of [...workflow.options]) if (o.value) o.remove();
      last = '';
    };

    function remember() {
      const p = new URLSearchParams();
      if (status.value) p.set('status', status.value);
      if (workflow.value) p.set('workflow', workflow.value);
      if (search.value.trim()) p.set('q', search.value.trim());
      if (limit !== '50') p.set('limit', limit);
      const s = p.toString();
      history.replaceState(null, '', s ? '/?' + s : '/');
    }

    function fillWorkflows() {
      const names = [...new Set(deployments.map((d) => d.name))].sort();
      const have = new Set([...workflow.options].map((o) => o.value));
      for (const n of names) {
        if (have.has(n)) continue;
        const o = el('option', { text: n });
        o.value = n;
        workflow.append(o);
      }
      if (wanted && !names.includes(wanted)) {
        const o = el('option', { text: wanted });
        o.value = wanted;
        workflow.append(o);
      }
      if (wanted) {
        workflow.value = wanted;
        wanted = '';
      }
    }

    function row(run) {
      const dep = deploymentOf(run.component_hash, run.component);
      const origin = run.origin || (run.idempotency_key ? 'key ' + run.idempotency_key : '');
      const tr = el('tr', { data: { run: run.id, status: run.status } },
        el('td', {}, el('a', { href: runHref(run.id), class: 'mono run-link', text: run.id })),
        el('td', { class: 'workflow', text: run.component }),
        el('td', { class: 'muted', text: dep ? 'v' + dep.version : run.component_hash.slice(0, 10) }),
        el('td', { class: 'status' }, badge(run.status),
          run.queue_reason ? el('span', { class: 'muted small', text: ' ' + run.queue_reason }) : null,
          run.error ? el('div', { class: 'err small', text: run.error.kind }) : null),
        el('td', { class: 'steps num', text: run.steps === undefined ? '-' : run.steps }),
        el('td', { class: 'retries num' + (run.retries > 0 ? ' warn' : ''), text: run.retries === undefined ? '-' : run.retries }),
        el('td', { text: when(run.started_at || run.created_at) }),
        el('td', { text: duration(runDuration(run)) }),
        el('td', { class: 'muted small', text: origin }));
      return tr;
    }

    async function load() {
      const text = search.value.trim();
      // The search box: runs whose idempotency key is the text (found by
      // the API), and the run whose id it is.
      const p = new URLSearchParams({ limit });
      if (status.value) p.set('status', status.value);
      if (workflow.value) p.set('workflow', workflow.value);
      if (text) p.set('key', text);
      const before = cursors[cursors.length - 1];
      if (before) p.set('before', before);
      const data = await api('/v1/runs?' + p.toString());
      let runs = data.runs || [];
      const more = data.next || null;
      if (/^run_[0-9A-Za-z]{26}$/.test(text) && cursors.length === 1 && !runs.some((r) => r.id === text)) {
        try {
          const found = await api('/v1/runs/' + encodeURIComponent(text));
          runs = [Object.assign(found.run, stepCounts(found.journal || []))].concat(runs);
        } catch (e) {
          if (e instanceof Unauthorized) throw e;
        }
      }
      if (deployments.length === 0 || runs.some((r) => !deploymentOf(r.component_hash, r.component))) {
        await loadDeployments();
        fillWorkflows();
      }
      next = more;
      const sig = JSON.stringify([runs, more, cursors.length]);
      byId('newer').disabled = cursors.length <= 1;
      byId('older').disabled = !next;
      byId('page-no').textContent = 'page ' + cursors.length;
      if (sig === last && !runs.some((r) => !FINAL.includes(r.status))) return;
      last = sig;
      byId('runs-body').replaceChildren(...runs.map(row));
      byId('empty').hidden = runs.length > 0;
    }

    refresh = () => guarded(load);
    const tick = poll(refresh);
    const restart = () => {
      cursors = [null];
      last = '';
      remember();
      refresh();
    };
    status.addEventListener('change', restart);
    workflow.addEventListener('change', restart);
    let typing = null;
    search.addEventListener('input', () => {
      clearTimeout(typing);
      typing = setTimeout(restart, 250);
    });
    byId('filters').addEventListener('submit', (ev) => {
      ev.preventDefault();
      restart();
    });
    byId('older').addEventListener('click', () => {
      if (!next) return;
      cursors.push(next);
      refresh();
    });
    byId('newer').addEventListener('click', () => {
      if (cursors.length > 1) cursors.pop();
      refresh();
    });
    tick();
  }

  // ---------------------------------------------------------------- run detail

  function runPage() {
    const id = decodeURIComponent(location.pathname.replace(/^\/runs\//, '').replace(/\/$/, ''));
    const content = byId('content');
    let last = '';
    let run = null;

    wipe = () => {
      content.replaceChildren();
      last = '';
    };

    async function load() {
      const data = await api('/v1/runs/' + encodeURIComponent(id));
      if (deployments.length === 0 || !deploymentOf(data.run.component_hash, data.run.component)) await loadDeployments();
      run = data.run;
      const sig = JSON.stringify(data);
      if (sig === last) return;
      last = sig;
      // Keep what the user opened or closed across refreshes.
      const openState = new Map();
      for (const d of content.querySelectorAll('details[data-k]')) openState.set(d.dataset.k, d.open);
      content.replaceChildren(...render(data.run, data.journal || []));
      for (const d of content.querySelectorAll('details[data-k]')) {
        if (openState.has(d.dataset.k)) d.open = openState.get(d.dataset.k);
      }
      document.title = 'Ferry · ' + run.component + ' · ' + run.status;
    }

    refresh = () => guarded(load);
    poll(async () => {
      if (run && FINAL.includes(run.status)) return;
      await refresh();
    });
    refresh();

    async function act(fn) {
      try {
        await fn();
      } catch (e) {
        if (e instanceof Unauthorized) refused(e.message);
        else notice(e.message, 'error');
      }
    }

    function cancel() {
      if (!confirm('Cancel run ' + id + '?\n\nSteps in flight are stopped; the run ends as cancelled.')) return;
      act(async () => {
        await api('/v1/runs/' + encodeURIComponent(id) + '/cancel', { method: 'POST' });
        notice('Cancelled.', 'ok');
        last = '';
        await refresh();
      });
    }

    function rerun(name, journal) {
      const steps = journal.filter((e) => e.kind === 'step' && e.child === 0);
      const first = Math.min(...steps.filter((e) => e.name === name).map((e) => e.seq));
      const names = (list) => [...new Set(list.map((e) => e.name))];
      const kept = names(steps.filter((e) => e.seq < first));
      const again = names(steps.filter((e) => e.seq >= first));
      const text = 'Rerun this run from step "' + name + '"?\n\n' +
        'Kept, with their recorded results (not run again): ' + (kept.length ? kept.join(', ') : 'none') + '\n' +
        'Run again: ' + again.join(', ') + ', and everything the ' + (run.kind === 'workflow' ? 'workflow' : 'step') +
        ' does after it\n\n' +
        'Steps run on their active deployments (deploy a fix first). A new run is created; this one stays as it is.';
      if (!confirm(text)) return;
      act(async () => {
        const r = await api('/v1/runs/' + encodeURIComponent(id) + '/rerun', { method: 'POST', body: { from: name } });
        location.assign(runHref(r.run.id));
      });
    }

    // A new run of the same deployment with the same input: on the version
    // this run ran on, or on the active one.
    function retryRun(onActive) {
      const version = onActive ? activeOf(run.component) : deploymentOf(run.component_hash, run.component);
      const text = 'Retry run ' + id + '?\n\n' +
        'A new run of ' + run.component + (version ? ' v' + version.version : '') + ' starts with the same input, ' +
        (onActive ? 'on the active version.' : 'on the version this run ran on.') + ' Its steps run on their active ' +
        'deployments.\n\nThis run stays as it is; its idempotency key is not reused.';
      if (!confirm(text)) return;
      act(async () => {
        const r = await api('/v1/runs/' + encodeURIComponent(id) + '/retry',
          { method: 'POST', body: onActive ? { active: true } : {} });
        location.assign(runHref(r.run.id));
      });
    }

    async function exportRun() {
      act(async () => {
        const doc = await api('/v1/runs/' + encodeURIComponent(id) + '/export');
        download(id + '.export.json', JSON.stringify(doc, null, 2));
      });
    }

    // Replay on the daemon (POST /v1/runs/{id}/replay): the recording is
    // re-executed against its journal, with no side effects. The last
    // result stays on the page across refreshes: { state: 'running' |
    // 'done' | 'error', data, message, at }.
    let replayed = null;

    function replayRun() {
      if (replayed && replayed.state === 'running') return;
      replayed = { state: 'running', at: nowUs() };
      showReplay();
      (async () => {
        try {
          const data = await api('/v1/runs/' + encodeURIComponent(id) + '/replay', { method: 'POST' });
          replayed = { state: 'done', data, at: replayed.at };
        } catch (e) {
          if (e instanceof Unauthorized) {
            replayed = null;
            refused(e.message);
            return;
          }
          replayed = { state: 'error', message: e.message, at: replayed.at };
        }
        showReplay();
      })();
    }

    function showReplay() {
      const old = byId('replay-result');
      if (old) old.replaceWith(replayPanel());
      const button = byId('replay-run');
      if (button) button.disabled = !!replayed && replayed.state === 'running';
    }

    function replayPanel() {
      if (!replayed) return el('div', { id: 'replay-result', class: 'replay-result', hidden: true });
      if (replayed.state === 'running') {
        return el('div', { id: 'replay-result', class: 'replay-result v-running', role: 'status', data: { verdict: 'running' } },
          el('strong', { text: 'Replaying…' }), ' re-executing the recording against its journal.');
      }
      if (replayed.state === 'error') {
        return el('div', { id: 'replay-result', class: 'replay-result v-error', role: 'status', data: { verdict: 'error' } },
          el('strong', { text: 'Replay failed: ' }), el('span', { class: 'pre-wrap', text: replayed.message }));
      }
      const d = replayed.data || {};
      const verdict = String(d.verdict || (d.identical ? 'identical' : 'diverged'));
      const counts = thousands(d.entries_checked || 0) + ' journal entries checked (' + thousands(d.entries_matched || 0) +
        ' matched, of ' + thousands(d.journal_entries || 0) + ' recorded) in ' + duration(d.duration_us) + '.';
      const box = el('div', { id: 'replay-result', class: 'replay-result v-' + verdict, role: 'status', data: { verdict } });
      const head = el('p', { class: 'verdict' });
      box.append(head);
      if (verdict === 'identical') {
        head.append(el('strong', { text: '✔ Identical' }), ': ' + counts + ' The replay did exactly what the record says.');
      } else if (verdict === 'ended-early') {
        head.append(el('strong', { text: 'Ended early' }), ': ' + counts);
        if (d.ended_early) box.append(el('p', { class: 'pre-wrap small', text: d.ended_early }));
      } else {
        const v = d.divergence || {};
        // Key u32::MAX: the run's result as a whole, not one entry.
        const k = !v.key ? '' : (v.key.seq === 4294967295 ? 'the run\'s result' : keyOf(v.key));
        head.append(el('strong', { text: '✘ Diverged' }), k ? ' at ' : '', k ? el('span', { class: 'mono', text: k }) : null,
          ': ' + counts);
        if (v.reason) box.append(el('p', { class: 'reason pre-wrap', text: v.reason }));
        const sides = el('div', { class: 'sides' });
        for (const [label, side] of [['recorded', v.recorded], ['replayed', v.replayed]]) {
          const part = el('div', { class: 'side side-' + label, data: { side: label } });
          if (!side) {
            part.append(el('h4', { text: label[0].toUpperCase() + label.slice(1) + ': ' }),
              el('span', { class: 'muted', text: label === 'recorded' ? 'nothing: the journal ends here' : 'no call' }));
          } else {
            part.append(el('h4', {}, label[0].toUpperCase() + label.slice(1) + ': ',
              el('span', { class: 'muted', text: side.kind + ' ' }), el('span', { class: 'name', text: side.name })));
            part.append(payload('request', side.request,
              { key: 'replay:' + label + ':in', file: id + '-replay-' + label + '.request', open: true, cls: 'request' }));
            if (side.response !== null && side.response !== undefined) {
              part.append(payload('response', side.response,
                { key: 'replay:' + label + ':out', file: id + '-replay-' + label + '.response', open: true, cls: 'response' }));
            }
          }
          sides.append(part);
        }
        box.append(sides);
      }
      box.append(el('p', { class: 'muted small', text: 'Replayed by the daemon at ' + when(replayed.at) +
        ', with the run ' + (d.status || '?') + '; nothing was sent over the network or written.' }));
      return box;
    }

    function render(r, journal) {
      const dep = deploymentOf(r.component_hash, r.component);
      const out = [];
      const title = el('h1', {}, el('span', { class: 'muted', text: r.kind + ' ' }),
        el('span', { id: 'run-workflow', text: r.component }), ' ', el('span', { id: 'run-status' }, badge(r.status)));
      out.push(title);

      const facts = el('dl', { class: 'facts' });
      const fact = (k, v) => facts.append(el('dt', { text: k }), el('dd', {}, v));
      fact('run', el('span', { id: 'run-id', class: 'mono', text: r.id }));
      fact('version', (dep ? 'v' + dep.version + ' ' : '') + 'sha256:' + r.component_hash.slice(0, 12));
      fact('created', when(r.created_at));
      fact('started', when(r.started_at));
      fact('finished', when(r.finished_at));
      fact('duration', duration(runDuration(r)));
      if (r.idempotency_key) fact('key', r.idempotency_key);
      if (r.origin) {
        const m = /(rerun|retry) of (run_[0-9A-Za-z]{26})/.exec(r.origin);
        fact('origin', m ? el('span', { id: 'run-origin' }, r.origin.slice(0, m.index) + m[1] + ' of ',
          el('a', { href: runHref(m[2]), class: 'mono', text: m[2] }), r.origin.slice(m.index + m[0].length))
          : el('span', { id: 'run-origin', text: r.origin }));
      }
      if (r.status === 'queued' && r.queue_reason) fact('queued', r.queue_reason);
      if (r.waiting_on) fact('waiting on', 'event ' + r.waiting_on);
      if (r.wake_at && r.status === 'waiting') fact('wakes', when(r.wake_at));
      const attempts = journal.filter((e) => e.kind === 'step' && e.child === 0);
      const retries = attempts.filter((e) => e.attempt > 1).length;
      const fuel = attempts.reduce((n, e) => n + (e.fuel || 0), 0);
      fact('steps', attempts.length + ' attempts, ' + retries + ' retries, fuel ' + thousands(fuel));
      out.push(facts);

      const actions = el('div', { class: 'actions' });
      if (!FINAL.includes(r.status)) {
        actions.append(el('button', { id: 'cancel', type: 'button', class: 'danger', onclick: cancel }, 'Cancel run'));
      }
      if (r.status === 'failed' || r.status === 'cancelled') {
        actions.append(el('button', { id: 'retry', type: 'button', onclick: () => retryRun(false),
          title: 'A new run with the same input, on this run\'s version' }, 'Retry run'));
        const active = activeOf(r.component);
        if (active && active.hash !== r.component_hash && active.world === r.kind) {
          actions.append(el('button', { id: 'retry-active', type: 'button', onclick: () => retryRun(true),
            title: 'A new run with the same input, on the active version' }, 'Retry on active v' + active.version));
        }
      }
      actions.append(el('button', { id: 'replay-run', type: 'button', onclick: replayRun,
        disabled: !!replayed && replayed.state === 'running',
        title: 'Re-execute this run against its journal on the daemon, with no side effects' }, 'Replay'));
      actions.append(el('button', { id: 'export', type: 'button', onclick: exportRun }, 'Download export'));
      out.push(actions);

      out.push(el('div', { class: 'replay', id: 'replay' },
        el('strong', {}, 'Replay '), 'this run offline, with no side effects (every call answered from the journal): ',
        el('code', { text: 'ferry replay ' + r.id }), '. To test a fix against the recorded responses: ',
        el('code', { text: 'ferry replay ' + r.id + ' --component STEP=fixed.wasm' }), '.', replayPanel()));

      if (r.error) {
        out.push(el('div', { class: 'run-error', id: 'run-error' }, el('strong', { text: r.error.kind + ': ' }),
          el('span', { class: 'pre-wrap', text: r.error.message })));
      }
      const io = el('div', { class: 'io' });
      io.append(payload('Run input', r.input, { key: 'run-input', file: r.id + '.input', cls: 'run-input' }));
      if (r.output !== null && r.output !== undefined) {
        const p = payload('Run output', r.output, { key: 'run-output', file: r.id + '.output', open: true });
        p.id = 'run-output';
        io.append(p);
      }
      out.push(io);

      out.push(el('h2', { text: 'Timeline' }));
      out.push(waterfall(r, journal));
      out.push(el('h2', { text: 'Journal (' + journal.length + ' entries)' }));
      out.push(entries(r, journal));
      return out;
    }

    function span(r, journal) {
      const top = journal.filter((e) => e.child === 0);
      let t0 = r.started_at || r.created_at;
      let t1 = r.finished_at || nowUs();
      for (const e of top) {
        t0 = Math.min(t0, e.started_at);
        t1 = Math.max(t1, e.finished_at);
      }
      return [t0, Math.max(t1, t0 + 1)];
    }

    function waterfall(r, journal) {
      const [t0, t1] = span(r, journal);
      const total = t1 - t0;
      const box = el('div', { class: 'waterfall', id: 'waterfall' });
      box.append(el('div', { class: 'wf-row wf-scale' }, el('span', { class: 'wf-label', text: '' }),
        el('span', { class: 'wf-track' }, el('span', { class: 'wf-tick-l', text: '0' }),
          el('span', { class: 'wf-tick-r', text: duration(total) }))));
      for (const e of journal.filter((x) => x.child === 0)) {
        const left = ((e.started_at - t0) / total) * 100;
        const width = Math.max(((e.finished_at - e.started_at) / total) * 100, 0.4);
        const bar = el('span', { class: 'wf-bar k-' + e.kind + ' st-' + e.status,
          title: keyOf(e) + ' ' + e.name + ': +' + duration(e.started_at - t0) + ', ' +
            duration(e.finished_at - e.started_at) });
        bar.style.left = Math.min(left, 99.6) + '%';
        bar.style.width = Math.min(width, 100 - Math.min(left, 99.6)) + '%';
        const label = el('a', { class: 'wf-label', href: '#' + anchorOf(e) },
          el('span', { class: 'mono muted', text: keyOf(e) + ' ' }), e.kind === 'step' ? e.name : e.kind + ' ' + e.name);
        box.append(el('div', { class: 'wf-row', data: { key: keyOf(e) } }, label, el('span', { class: 'wf-track' }, bar),
          el('span', { class: 'wf-dur', text: duration(e.finished_at - e.started_at) })));
      }
      return box;
    }

    function keyOf(e) {
      if (e.attempt === 0 && e.child === 0) return '#' + e.seq;
      if (e.child === 0) return '#' + e.seq + '.' + e.attempt;
      return '#' + e.seq + '.' + e.attempt + '/' + e.child;
    }

    function anchorOf(e) {
      return 'e' + e.seq + '-' + e.attempt;
    }

    function entries(r, journal) {
      const [t0] = span(r, journal);
      const list = el('div', { class: 'entries', id: 'entries' });
      const top = journal.filter((e) => e.child === 0);
      const seqs = [...new Set(top.map((e) => e.seq))];
      for (const seq of seqs) {
        const group = top.filter((e) => e.seq === seq);
        const head = group[0];
        const isStep = head.kind === 'step';
        const g = el('section', { class: 'call', data: { seq: String(seq), name: head.name, kind: head.kind } });
        const h = el('h3', {}, el('span', { class: 'mono muted', text: '#' + seq + ' ' }),
          el('span', { class: 'kind', text: head.kind + ' ' }), el('span', { class: 'name', text: head.name }));
        if (isStep) {
          h.append(' ', el('span', { class: 'muted small', text: group.length + (group.length === 1 ? ' attempt' : ' attempts') }));
          h.append(el('button', { type: 'button', class: 'rerun', data: { step: head.name },
            onclick: () => rerun(head.name, journal) }, 'Rerun from this step'));
        }
        g.append(h);
        for (const e of group) g.append(entry(e, journal, t0));
        list.append(g);
      }
      if (seqs.length === 0) list.append(el('p', { class: 'muted', text: 'No journal entries yet.' }));
      return list;
    }

    function entry(e, journal, t0) {
      const failed = e.status === 'error';
      const box = el('div', { class: 'entry', id: anchorOf(e),
        data: { key: keyOf(e), name: e.name, kind: e.kind, status: e.status } });
      const meta = el('div', { class: 'meta' }, el('span', { class: 'mono', text: keyOf(e) }), ' ',
        el('span', { class: 'badge s-' + (failed ? 'failed' : 'completed'), text: e.status }),
        ' +' + duration(e.started_at - t0) + ', took ' + duration(e.finished_at - e.started_at));
      if (e.fuel !== null && e.fuel !== undefined) {
        const budget = e.component ? budgetOf(e.component) : null;
        meta.append(el('span', { class: 'fuel', text: ' · fuel ' + thousands(e.fuel) +
          (budget ? ' of ' + thousands(budget) + ' (' + ((e.fuel / budget) * 100).toFixed(2) + '%)' : '') }));
      }
      if (e.component) meta.append(el('span', { class: 'muted small', text: ' · ' + shortComponent(e.component) }));
      box.append(meta);
      const step = e.kind === 'step';
      if (e.error) {
        box.append(el('div', { class: 'error' }, el('strong', { text: 'error ' }), el('span', { class: 'pre-wrap', text: e.error })));
      }
      const k = keyOf(e);
      box.append(payload(step ? 'input' : 'request', e.request,
        { key: k + ':in', file: r0() + '-' + k + '.in', open: failed, cls: 'input' }));
      if (e.response !== null && e.response !== undefined) {
        const resp = parse(e.response);
        if (failed && resp && typeof resp === 'object' && 'retry_at' in resp) {
          box.append(el('div', { class: 'retry muted', text: resp.retry_at
            ? 'next attempt at +' + duration(resp.retry_at - t0) + ' (backoff ' + duration(resp.retry_at - e.finished_at) + ')'
            : 'no further attempt' }));
        } else {
          box.append(payload(step ? 'output' : 'response', e.response, { key: k + ':out', file: r0() + '-' + k + '.out', cls: 'output' }));
        }
      }
      const kids = journal.filter((c) => c.child > 0 && c.seq === e.seq && c.attempt === e.attempt);
      if (kids.length) {
        const logs = kids.filter((c) => c.kind === 'log');
        const http = kids.filter((c) => c.kind === 'http');
        const others = kids.filter((c) => c.kind !== 'log' && c.kind !== 'http');
        const ul = el('ul', { class: 'children' });
        for (const c of kids) {
          const li = el('li', { class: 'child k-' + c.kind, data: { key: keyOf(c), kind: c.kind, status: c.status } },
            el('span', { class: 'mono muted', text: keyOf(c) + ' ' }), el('span', { class: 'kind', text: c.kind + ' ' }));
          if (c.kind === 'log') {
            const msg = parse(c.request);
            li.append(el('span', { class: 'level', text: c.name + ' ' }),
              el('span', { class: 'log pre-wrap', text: typeof msg === 'string' ? msg : c.request }));
          } else {
            li.append(el('span', { class: 'name', text: c.name }),
              el('span', { class: 'muted', text: ' ' + c.status + ', ' + duration(c.finished_at - c.started_at) }));
            if (c.error) li.append(el('div', { class: 'error pre-wrap', text: c.error }));
            li.append(payload(c.kind === 'http' ? 'HTTP request' : 'request', c.request, { key: keyOf(c) + ':in', file: r0() + '-' + keyOf(c) + '.in' }));
            if (c.response !== null && c.response !== undefined) {
              li.append(payload(c.kind === 'http' ? 'HTTP response' : 'response', c.response, { key: keyOf(c) + ':out', file: r0() + '-' + keyOf(c) + '.out' }));
            }
          }
          ul.append(li);
        }
        const d = el('details', { class: 'kids', data: { k: k + ':kids' } },
          el('summary', {}, logs.length + ' logs, ' + http.length + ' HTTP calls, ' + others.length + ' other host calls'), ul);
        if (failed) d.open = true;
        box.append(d);
      }
      return box;
    }

    function r0() {
      return id;
    }

    function budgetOf(component) {
      const hash = component.split('@sha256:').pop().split('@').pop();
      const d = deployments.find((x) => x.hash === hash || component.endsWith(x.hash));
      return d && d.config && d.config.fuel ? d.config.fuel : null;
    }

    function shortComponent(c) {
      const i = c.indexOf('@');
      return i < 0 ? c : c.slice(0, i) + '@' + c.slice(i + 1).replace(/^sha256:/, '').slice(0, 10);
    }
  }

  // ---------------------------------------------------------------- deployments

  const STATUSES = ['queued', 'running', 'waiting', 'completed', 'failed', 'cancelled'];

  // A deployment's settings as short texts ("fuel 1,000,000", "rate 10 per 60 s per /client").
  function limitsOf(c) {
    const out = [];
    if (!c) return out;
    const per = (key) => (key ? ' per ' + key : '');
    if (c.fuel !== null && c.fuel !== undefined) out.push(['fuel', 'fuel ' + thousands(c.fuel)]);
    if (c.memory_bytes !== null && c.memory_bytes !== undefined) out.push(['memory', 'memory ' + bytes(c.memory_bytes)]);
    if (c.timeout_ms !== null && c.timeout_ms !== undefined) out.push(['timeout', 'timeout ' + duration(c.timeout_ms * 1000)]);
    if (c.allow_hosts && c.allow_hosts.length) out.push(['allow-hosts', 'allow ' + c.allow_hosts.join(', ')]);
    if (c.concurrency) out.push(['concurrency', 'concurrency ' + c.concurrency.limit + per(c.concurrency.key)]);
    if (c.rate) out.push(['rate', 'rate ' + c.rate.limit + ' per ' + duration(c.rate.period_ms * 1000) + per(c.rate.key)]);
    if (c.priority) out.push(['priority', 'priority ' + c.priority]);
    if (c.on_events && c.on_events.length) out.push(['on-events', 'on events ' + c.on_events.join(', ')]);
    return out;
  }

  function runsHref(name, status) {
    const p = new URLSearchParams({ workflow: name });
    if (status) p.set('status', status);
    return '/?' + p.toString();
  }

  function deploymentsPage() {
    const box = byId('deployments');
    const queueBox = byId('queue');
    let last = '';

    wipe = () => {
      box.replaceChildren();
      queueBox.replaceChildren();
      last = '';
    };

    async function load() {
      const [d, q] = await Promise.all([api('/v1/deployments?runs=true'), api('/v1/queue')]);
      const sig = JSON.stringify([d, q]);
      if (sig === last) return;
      last = sig;
      deployments = (d && d.deployments) || [];
      queueBox.replaceChildren(queueTable((q && q.queue) || []));
      box.replaceChildren(...byName(deployments).map(([name, versions]) => deploymentBox(name, versions)));
      byId('empty').hidden = deployments.length > 0;
    }

    function byName(list) {
      const groups = new Map();
      for (const d of list) {
        if (!groups.has(d.name)) groups.set(d.name, []);
        groups.get(d.name).push(d);
      }
      return [...groups.entries()];
    }

    function queueTable(queue) {
      if (queue.length === 0) return el('p', { class: 'muted', id: 'queue-empty', text: 'No runs are queued.' });
      const body = el('tbody');
      for (const w of queue) {
        const held = el('ul', { class: 'held' });
        for (const h of w.held || []) {
          held.append(el('li', { data: { runs: String(h.runs) } }, el('strong', { text: h.runs + ' × ' }), h.reason));
        }
        if (!held.children.length) held.append(el('li', { class: 'muted', text: 'nothing: waiting for a worker' }));
        if (w.sampled < w.queued) {
          held.append(el('li', { class: 'muted small', text: 'reasons of the ' + w.sampled + ' newest queued runs' }));
        }
        body.append(el('tr', { data: { workflow: w.workflow, queued: String(w.queued) } },
          el('td', {}, el('a', { href: runsHref(w.workflow, 'queued'), text: w.workflow })),
          el('td', { class: 'num queued', text: thousands(w.queued) }),
          el('td', { class: 'reasons' }, held)));
      }
      return el('table', { class: 'runs', id: 'queue-table' },
        el('thead', {}, el('tr', {}, el('th', { text: 'Workflow' }), el('th', { text: 'Queued' }),
          el('th', { text: 'Held back by' }))), body);
    }

    function deploymentBox(name, versions) {
      const active = versions.find((v) => v.active);
      const head = el('h3', {}, el('span', { class: 'name', text: name }), ' ',
        el('span', { class: 'badge world', text: versions[0].world }), ' ',
        el('span', { class: 'muted small', text: active ? 'active v' + active.version : 'no active version' }),
        el('a', { class: 'small push', href: runsHref(name), text: 'runs →' }));
      const body = el('tbody');
      for (const v of versions) body.append(versionRow(v, versions));
      const table = el('table', { class: 'runs versions' },
        el('thead', {}, el('tr', {}, ...['Version', 'Component', 'Created', 'Settings', 'Runs', ''].map((t) => el('th', { text: t })))),
        body);
      return el('section', { class: 'deployment panel-box', id: 'd-' + name, data: { name } }, head, table);
    }

    function versionRow(v, versions) {
      const twin = versions.find((o) => o !== v && o.hash === v.hash);
      const limits = limitsOf(v.config);
      const settings = el('td', { class: 'limits' });
      if (limits.length === 0) settings.append(el('span', { class: 'muted', text: 'defaults' }));
      for (const [k, text] of limits) settings.append(el('span', { class: 'chip', data: { k }, text }));
      const runs = el('td', { class: 'runs-by-status' });
      const counts = v.runs || {};
      let total = 0;
      for (const st of STATUSES) {
        const n = counts[st] || 0;
        if (!n) continue;
        total += n;
        runs.append(el('a', { class: 'badge s-' + st, href: runsHref(v.name, st), data: { status: st, n: String(n) },
          text: st + ' ' + thousands(n) }), ' ');
      }
      runs.dataset.total = String(total);
      if (!total) runs.append(el('span', { class: 'muted', text: 'no runs' }));
      if (twin) runs.append(el('div', { class: 'muted small', text: 'same component as v' + twin.version + ': runs are shared' }));
      const action = el('td');
      if (!v.active) {
        action.append(el('button', { type: 'button', class: 'activate', onclick: () => activate(v) }, 'Activate'));
      }
      return el('tr', { class: 'version', data: { version: String(v.version), active: String(!!v.active) } },
        el('td', {}, el('span', { class: 'mono', text: 'v' + v.version }),
          v.active ? el('span', { class: 'badge s-completed active-mark', text: 'active' }) : null),
        el('td', {}, el('span', { class: 'mono hash', title: 'sha256:' + v.hash, text: 'sha256:' + v.hash.slice(0, 12) }),
          el('div', { class: 'muted small', text: v.world })),
        el('td', {}, when(v.created_at), el('div', { class: 'muted small', text: relative(v.created_at) })),
        settings, runs, action);
    }

    function activate(v) {
      const text = 'Make v' + v.version + ' the active version of ' + v.name + '?\n\n' +
        'New runs (and step calls) take it; runs already started stay on the version they started with.';
      if (!confirm(text)) return;
      (async () => {
        try {
          await api('/v1/deployments/' + encodeURIComponent(v.name) + '/activate', { method: 'POST', body: { version: v.version } });
          notice(v.name + ' v' + v.version + ' is active.', 'ok');
          last = '';
          await refresh();
        } catch (e) {
          if (e instanceof Unauthorized) refused(e.message);
          else notice(e.message, 'error');
        }
      })();
    }

    refresh = () => guarded(load);
    poll(refresh, 5000)();
  }

  // ---------------------------------------------------------------- schedules

  function schedulesPage() {
    const body = byId('schedules-body');

    wipe = () => body.replaceChildren();

    async function load() {
      const data = await api('/v1/schedules');
      const list = (data && data.schedules) || [];
      const openState = new Map();
      for (const d of body.querySelectorAll('details[data-k]')) openState.set(d.dataset.k, d.open);
      body.replaceChildren(...list.map(row));
      for (const d of body.querySelectorAll('details[data-k]')) {
        if (openState.has(d.dataset.k)) d.open = openState.get(d.dataset.k);
      }
      byId('empty').hidden = list.length > 0;
    }

    function row(s) {
      const zoned = inZone(s.next_fire_at, s.timezone);
      const next = el('td', { class: 'next', data: { at: String(s.next_fire_at) } },
        el('div', { text: when(s.next_fire_at), title: 'in this browser\'s time zone' }),
        el('div', { class: 'relative', text: relative(s.next_fire_at) }),
        zoned ? el('div', { class: 'muted small zoned', text: zoned }) : null);
      const lastFired = el('td', { class: 'last' });
      if (s.last_fired_at) {
        lastFired.append(el('div', { text: when(s.last_fired_at) }),
          el('div', { class: 'muted small', text: relative(s.last_fired_at) }));
      } else {
        lastFired.append(el('span', { class: 'muted', text: 'never' }));
      }
      return el('tr', { data: { name: s.name } },
        el('td', { class: 'name', text: s.name }),
        el('td', {}, el('a', { href: runsHref(s.workflow), text: s.workflow })),
        el('td', { class: 'mono cron', text: s.cron }),
        el('td', { class: 'tz', text: s.timezone }),
        next, lastFired,
        el('td', {}, payload('input', s.input, { key: 'input:' + s.name, file: 'schedule-' + s.name + '.input' })));
    }

    refresh = () => guarded(load);
    poll(refresh)();
  }

  // ---------------------------------------------------------------- stats

  const SVG_NS = 'http://www.w3.org/2000/svg';

  // An SVG element; children are elements or text (made text nodes).
  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'data') for (const [dk, dv] of Object.entries(v)) e.setAttribute('data-' + dk, String(dv));
      else e.setAttribute(k, String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  // 1, 2 or 5 times a power of ten, at least `n`.
  function niceMax(n) {
    if (n <= 0) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(n)));
    for (const m of [1, 2, 5, 10]) if (m * p >= n) return m * p;
    return 10 * p;
  }

  // A bucket's start as a label: the time of day, with the date when the
  // window spans days.
  function tick(us, long) {
    const t = when(us);
    return long ? t.slice(5, 16) : t.slice(11, 16);
  }

  function statsPage() {
    const range = byId('range');
    const q = new URLSearchParams(location.search);
    if (q.get('window') && [...range.options].some((o) => o.value === q.get('window'))) range.value = q.get('window');
    let last = '';

    wipe = () => {
      for (const id of ['summary', 'chart-throughput', 'chart-latency', 'chart-retries']) byId(id).replaceChildren();
      last = '';
    };

    async function load() {
      // "fit": the last 24 hours, narrowed by the API to where the data is.
      const fit = range.value === 'fit';
      const span = fit ? 86400 : (parseInt(range.value, 10) || 3600);
      const until = nowUs();
      const p = new URLSearchParams({ since: String(until - span * 1e6), until: String(until) });
      if (fit) p.set('fit', 'true');
      const data = await api('/v1/stats?' + p.toString());
      const sig = JSON.stringify([data.buckets, data.steps, data.causes, data.runs, data.truncated]);
      if (sig === last) return;
      last = sig;
      byId('summary').replaceChildren(summary(data));
      byId('chart-throughput').replaceChildren(throughput(data));
      byId('chart-latency').replaceChildren(latency(data.steps || []));
      byId('chart-retries').replaceChildren(retries(data.causes || []));
    }

    function summary(d) {
      const retried = (d.causes || []).reduce((n, c) => n + c.retried, 0);
      const runs = STATUSES.filter((s) => d.runs && d.runs[s]).map((s) => s + ' ' + thousands(d.runs[s])).join(', ');
      return el('span', {}, thousands(d.attempts) + ' step attempts in the window, ' + thousands(d.failed) + ' failed, ' +
        thousands(retried) + ' retried (buckets of ' + duration(d.bucket_us) + '). Runs: ' + (runs || 'none') + '.',
        d.truncated ? el('strong', { class: 'err', text: ' Only the first attempts were counted: choose a shorter window.' }) : null);
    }

    function empty(text) {
      return el('p', { class: 'muted', text });
    }

    function throughput(d) {
      const buckets = d.buckets || [];
      if (!d.attempts) return empty('No step attempt finished in this window.');
      const W = 960, H = 240, L = 48, R = 12, T = 12, B = 30;
      const pw = W - L - R, ph = H - T - B;
      const max = niceMax(Math.max(...buckets.map((b) => b.ok + b.failed), 1));
      const bw = pw / buckets.length;
      const y = (n) => T + ph - (n / max) * ph;
      const chart = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, class: 'chart-svg', role: 'img',
        'aria-label': 'Step attempts per ' + duration(d.bucket_us) });
      for (const f of [0, 0.5, 1]) {
        chart.append(svg('line', { class: 'grid', x1: L, x2: W - R, y1: y(max * f), y2: y(max * f) }),
          svg('text', { class: 'axis', x: L - 6, y: y(max * f) + 4, 'text-anchor': 'end' }, thousands(max * f)));
      }
      const long = (d.until - d.since) > 86400e6;
      buckets.forEach((b, i) => {
        const x = L + i * bw;
        const w = Math.max(bw - 1, 1);
        const g = svg('g', { class: 'bucket', data: { start: b.start, ok: b.ok, failed: b.failed } },
          svg('title', {}, tick(b.start, true) + ': ' + b.ok + ' ok, ' + b.failed + ' failed'));
        if (b.ok) g.append(svg('rect', { class: 'bar-ok', x, width: w, y: y(b.ok), height: y(0) - y(b.ok) }));
        if (b.failed) {
          g.append(svg('rect', { class: 'bar-failed', x, width: w, y: y(b.ok + b.failed), height: y(b.ok) - y(b.ok + b.failed) }));
        }
        chart.append(g);
      });
      const labels = [0, Math.floor(buckets.length / 2), buckets.length - 1].filter((v, i, a) => a.indexOf(v) === i);
      for (const i of labels) {
        const anchor = i === 0 ? 'start' : (i === buckets.length - 1 ? 'end' : 'middle');
        const x = L + i * bw + (anchor === 'end' ? bw : (anchor === 'middle' ? bw / 2 : 0));
        chart.append(svg('text', { class: 'axis', x, y: H - 10, 'text-anchor': anchor }, tick(buckets[i].start, long)));
      }
      const legend = el('p', { class: 'legend small' }, el('span', { class: 'key ok' }), ' ok ',
        el('span', { class: 'key failed' }), ' failed, per ' + duration(d.bucket_us));
      return el('div', {}, chart, legend);
    }

    function latency(steps) {
      if (steps.length === 0) return empty('No step attempt finished in this window.');
      const rows = [...steps].sort((a, b) => b.p99_us - a.p99_us || a.name.localeCompare(b.name)).slice(0, 40);
      const W = 960, LABEL = 200, VALUES = 300, ROW = 26, T = 6;
      const pw = W - LABEL - VALUES - 10;
      const max = Math.max(...rows.map((s) => s.p99_us), 1);
      const x = (us) => LABEL + (us / max) * pw;
      const chart = svg('svg', { viewBox: '0 0 ' + W + ' ' + (T * 2 + rows.length * ROW), class: 'chart-svg', role: 'img',
        'aria-label': 'Latency percentiles by step call' });
      rows.forEach((s, i) => {
        const top = T + i * ROW;
        const label = s.name.length > 28 ? s.name.slice(0, 27) + '…' : s.name;
        chart.append(svg('g', { class: 'step', data: { name: s.name, p50: s.p50_us, p95: s.p95_us, p99: s.p99_us } },
          svg('title', {}, s.name + ': ' + s.attempts + ' attempts, ' + s.failed + ' failed; p50 ' + duration(s.p50_us) +
            ', p95 ' + duration(s.p95_us) + ', p99 ' + duration(s.p99_us) + ', max ' + duration(s.max_us)),
          svg('text', { class: 'label', x: LABEL - 8, y: top + 16, 'text-anchor': 'end' }, label),
          svg('rect', { class: 'p99', x: LABEL, y: top + 4, height: 16, width: Math.max(x(s.p99_us) - LABEL, 1) }),
          svg('rect', { class: 'p95', x: LABEL, y: top + 4, height: 16, width: Math.max(x(s.p95_us) - LABEL, 1) }),
          svg('rect', { class: 'p50', x: LABEL, y: top + 4, height: 16, width: Math.max(x(s.p50_us) - LABEL, 1) }),
          svg('text', { class: 'value', x: W - VALUES, y: top + 16 },
            duration(s.p50_us) + ' · ' + duration(s.p95_us) + ' · ' + duration(s.p99_us) + '  (' + thousands(s.attempts) + ')')));
      });
      const legend = el('p', { class: 'legend small' }, el('span', { class: 'key p50' }), ' p50 ', el('span', { class: 'key p95' }),
        ' p95 ', el('span', { class: 'key p99' }), ' p99; values are p50 · p95 · p99 (attempts)' +
        (steps.length > rows.length ? '; the ' + rows.length + ' slowest of ' + steps.length + ' step calls' : ''));
      return el('div', {}, chart, legend);
    }

    function retries(causes) {
      if (causes.length === 0) return empty('No step attempt failed in this window.');
      const W = 960, LABEL = 240, VALUES = 220, ROW = 26, T = 6;
      const pw = W - LABEL - VALUES - 10;
      const max = Math.max(...causes.map((c) => c.failures), 1);
      const chart = svg('svg', { viewBox: '0 0 ' + W + ' ' + (T * 2 + causes.length * ROW), class: 'chart-svg', role: 'img',
        'aria-label': 'Failed attempts and retries by cause' });
      causes.forEach((c, i) => {
        const top = T + i * ROW;
        const name = c.kind + (c.http_status ? ' · HTTP ' + c.http_status : '');
        chart.append(svg('g', { class: 'cause', data: { kind: c.kind, http: c.http_status || '', retried: c.retried, failures: c.failures } },
          svg('title', {}, name + ': ' + c.failures + ' failed attempts, ' + c.retried + ' of them retried'),
          svg('text', { class: 'label', x: LABEL - 8, y: top + 16, 'text-anchor': 'end' }, name),
          svg('rect', { class: 'failures', x: LABEL, y: top + 4, height: 16, width: Math.max((c.failures / max) * pw, 1) }),
          c.retried ? svg('rect', { class: 'retried', x: LABEL, y: top + 4, height: 16, width: (c.retried / max) * pw }) : null,
          svg('text', { class: 'value', x: W - VALUES, y: top + 16 },
            thousands(c.retried) + ' retried of ' + thousands(c.failures) + ' failed')));
      });
      const legend = el('p', { class: 'legend small' }, el('span', { class: 'key retried' }), ' retried ',
        el('span', { class: 'key failures' }), ' failed attempts (the cause is the error kind and the HTTP status its message names)');
      return el('div', {}, chart, legend);
    }

    refresh = () => guarded(load);
    const tickNow = poll(refresh, 10000);
    range.addEventListener('change', () => {
      const p = new URLSearchParams(location.search);
      p.set('window', range.value);
      history.replaceState(null, '', '/stats?' + p.toString());
      last = '';
      refresh();
    });
    byId('range-form').addEventListener('submit', (ev) => ev.preventDefault());
    tickNow();
  }

  // ---------------------------------------------------------------- start

  document.addEventListener('DOMContentLoaded', () => {
    setupLogin();
    const page = document.body.dataset.page;
    if (page === 'runs') runsPage();
    else if (page === 'run') runPage();
    else if (page === 'deployments') deploymentsPage();
    else if (page === 'schedules') schedulesPage();
    else if (page === 'stats') statsPage();
  });
})();
