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
    return Math.floor(m / 60) + ' h ' + String(m % 60).padStart(2, '0') + ' m';
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

  // Polls `tick` every 2 s, one request at a time, paused while refused.
  function poll(tick) {
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
    setInterval(go, POLL_MS);
    return go;
  }

  // Deployments by hash, for versions and fuel budgets.
  let deployments = [];
  async function loadDeployments() {
    const d = await api('/v1/deployments');
    deployments = (d && d.deployments) || [];
  }

  function deploymentOf(hash) {
    return deployments.find((d) => d.hash === hash);
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
      const dep = deploymentOf(run.component_hash);
      const origin = run.origin || (run.idempotency_key ? 'key ' + run.idempotency_key : '');
      const tr = el('tr', { data: { run: run.id, status: run.status } },
        el('td', {}, el('a', { href: runHref(run.id), class: 'mono run-link', text: run.id })),
        el('td', { class: 'workflow', text: run.component }),
        el('td', { class: 'muted', text: dep ? 'v' + dep.version : run.component_hash.slice(0, 10) }),
        el('td', { class: 'status' }, badge(run.status),
          run.queue_reason ? el('span', { class: 'muted small', text: ' ' + run.queue_reason }) : null,
          run.error ? el('div', { class: 'err small', text: run.error.kind }) : null),
        el('td', { text: when(run.started_at || run.created_at) }),
        el('td', { text: duration(runDuration(run)) }),
        el('td', { class: 'muted small', text: origin }));
      return tr;
    }

    async function load() {
      const text = search.value.trim();
      let runs;
      let more = null;
      if (/^run_[0-9A-Za-z]{26}$/.test(text)) {
        try {
          runs = [(await api('/v1/runs/' + encodeURIComponent(text))).run];
        } catch (e) {
          if (e instanceof Unauthorized) throw e;
          runs = [];
        }
      } else {
        const p = new URLSearchParams({ limit });
        if (status.value) p.set('status', status.value);
        if (workflow.value) p.set('workflow', workflow.value);
        const before = cursors[cursors.length - 1];
        if (before) p.set('before', before);
        const data = await api('/v1/runs?' + p.toString());
        runs = data.runs || [];
        more = data.next || null;
        if (text) {
          const t = text.toLowerCase();
          runs = runs.filter((r) => r.id.toLowerCase().includes(t) ||
            (r.idempotency_key || '').toLowerCase().includes(t));
        }
      }
      if (deployments.length === 0 || runs.some((r) => !deploymentOf(r.component_hash))) {
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
    search.addEventListener('input', restart);
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
      if (deployments.length === 0 || !deploymentOf(data.run.component_hash)) await loadDeployments();
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

    async function exportRun() {
      act(async () => {
        const doc = await api('/v1/runs/' + encodeURIComponent(id) + '/export');
        download(id + '.export.json', JSON.stringify(doc, null, 2));
      });
    }

    function render(r, journal) {
      const dep = deploymentOf(r.component_hash);
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
        const m = /rerun of (run_[0-9A-Za-z]{26})/.exec(r.origin);
        fact('origin', m ? el('span', {}, 'rerun of ', el('a', { href: runHref(m[1]), class: 'mono', text: m[1] }),
          r.origin.slice(m.index + m[0].length)) : r.origin);
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
      actions.append(el('button', { id: 'export', type: 'button', onclick: exportRun }, 'Download export'));
      out.push(actions);

      out.push(el('div', { class: 'replay', id: 'replay' },
        el('strong', {}, 'Replay '), 'this run offline, with no side effects (every call answered from the journal): ',
        el('code', { text: 'ferry replay ' + r.id }), '. To test a fix against the recorded responses: ',
        el('code', { text: 'ferry replay ' + r.id + ' --component STEP=fixed.wasm' }), '.'));

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

  // ---------------------------------------------------------------- start

  document.addEventListener('DOMContentLoaded', () => {
    setupLogin();
    const page = document.body.dataset.page;
    if (page === 'runs') runsPage();
    else if (page === 'run') runPage();
  });
})();
