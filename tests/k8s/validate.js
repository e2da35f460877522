#!/usr/bin/env node
// Validates Cairn's Kubernetes manifests offline.
//
//   node validate.js PATH...        PATH: a .yaml/.yml file, or a directory
//                                   (its *.yaml/*.yml files, not recursive)
//   node validate.js --list PATH... also print "Kind namespace/name" of every
//                                   object that would be applied (for a
//                                   directory with a kustomization.yaml: the
//                                   objects of its listed resources)
//
// Every YAML document is checked against the Kubernetes OpenAPI schemas with
// kubernetes-models (the model class's .validate()), and for fields the
// schemas do not know (a typo such as "mountPropogation" would otherwise be
// silently ignored: the API server rejects or drops it). Then Cairn's own
// policy:
//   - RBAC: no "*" in apiGroups/resources/verbs/resourceNames, no
//     escalate/bind/impersonate, no Secrets in a ClusterRole (in a Role: only
//     "get" of named Secrets), no binding to the built-in
//     cluster-admin/admin/edit roles;
//   - every container has an image; no secret-looking env var (KEY, SECRET,
//     PASSWORD, TOKEN, CREDENTIAL) with a literal value;
//   - the agent DaemonSet: /var/lib/kubelet/pods hostPath mounted with
//     HostToContainer propagation, /var/lib/cairn hostPath, NODE_NAME from
//     fieldRef spec.nodeName, a toleration with operator Exists and no key,
//     requests and limits for cpu and memory, /healthz liveness and /readyz
//     readiness probes on a named container port;
//   - kustomization.yaml: every listed resource exists, every *.yaml beside it
//     is listed (except *.example.yaml), and no Secret is applied from the
//     repository.
// Exit status 0 when everything passes, 1 on any error (each one printed as
// "FILE:LINE: Kind/name: field: message"), 2 on a usage error.
'use strict';

const fs = require('fs');
const path = require('path');
const YAML = require('yaml');

// apiVersion -> module of kubernetes-models holding its classes.
function modelModule(apiVersion) {
  if (typeof apiVersion !== 'string' || !/^([a-z0-9.-]+\/)?v[0-9a-z]+$/.test(apiVersion)) return null;
  try {
    return require(`kubernetes-models/${apiVersion}`);
  } catch (e) {
    return null;
  }
}

const errors = [];
let objectsChecked = 0;

// ---- locating fields in the YAML source --------------------------------

function lineOf(ctx, segments) {
  let node = null;
  try {
    node = segments.length ? ctx.doc.getIn(segments, true) : ctx.doc.contents;
  } catch (e) {
    node = null;
  }
  // Fall back to the nearest ancestor that exists in the source.
  for (let n = segments.length - 1; !(node && node.range) && n >= 0; n--) {
    try {
      node = n ? ctx.doc.getIn(segments.slice(0, n), true) : ctx.doc.contents;
    } catch (e) {
      node = null;
    }
  }
  const off = node && node.range ? node.range[0] : ctx.doc.range[0];
  return ctx.lines.linePos(off).line;
}

function fieldName(segments) {
  let s = '';
  for (const seg of segments) {
    if (typeof seg === 'number') s += `[${seg}]`;
    else s += (s ? '.' : '') + seg;
  }
  return s || '(document)';
}

function report(ctx, segments, message) {
  const obj = ctx.obj || {};
  const kind = (obj && obj.kind) || '(no kind)';
  const name = (obj && obj.metadata && obj.metadata.name) || '(no name)';
  errors.push(`${ctx.file}:${lineOf(ctx, segments)}: ${kind}/${name}: ${fieldName(segments)}: ${message}`);
}

// "/spec/template/0/x" -> ['spec', 'template', 0, 'x'] (numbers where the data has arrays)
function pointerSegments(obj, pointer) {
  const segs = [];
  let cur = obj;
  for (const raw of pointer.split('/').slice(1)) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    const seg = Array.isArray(cur) && /^[0-9]+$/.test(key) ? Number(key) : key;
    segs.push(seg);
    cur = cur != null && typeof cur === 'object' ? cur[seg] : undefined;
  }
  return segs;
}

// ---- schema validation ------------------------------------------------------

// Wraps obj in proxies that record, per object, which properties the compiled
// schema validator looked at and whether it enumerated the keys (maps such as
// labels or resources.limits). A property of an object that the validator
// inspected but never looked at is not in the schema.
function tracked(obj) {
  const info = new Map(); // target object -> {read:Set, enumerated:bool}
  function wrap(o) {
    if (o === null || typeof o !== 'object') return o;
    const rec = { read: new Set(), enumerated: false };
    info.set(o, rec);
    const cache = new Map();
    return new Proxy(o, {
      get(t, k, r) {
        if (typeof k === 'string') rec.read.add(k);
        const v = Reflect.get(t, k, r);
        if (v !== null && typeof v === 'object') {
          if (!cache.has(k)) cache.set(k, wrap(v));
          return cache.get(k);
        }
        return v;
      },
      has(t, k) {
        if (typeof k === 'string') rec.read.add(k);
        return Reflect.has(t, k);
      },
      ownKeys(t) {
        rec.enumerated = true;
        return Reflect.ownKeys(t);
      },
    });
  }
  return { proxy: wrap(obj), info };
}

function unknownFields(obj, info) {
  const found = [];
  (function walk(o, segs) {
    if (o === null || typeof o !== 'object') return;
    if (Array.isArray(o)) {
      o.forEach((v, i) => walk(v, segs.concat(i)));
      return;
    }
    const rec = info.get(o);
    // Not reached by the validator, a map, or a free-form object (nothing read).
    const checked = rec && !rec.enumerated && rec.read.size > 0;
    for (const k of Object.keys(o)) {
      if (checked && !rec.read.has(k)) found.push(segs.concat(k));
      else walk(o[k], segs.concat(k));
    }
  })(obj, []);
  return found;
}

function validateSchema(ctx) {
  const obj = ctx.obj;
  const mod = modelModule(obj.apiVersion);
  const cls = mod && typeof obj.kind === 'string' ? mod[obj.kind] : null;
  if (!cls || typeof cls.prototype.validate !== 'function') {
    report(ctx, ['kind'], `no Kubernetes schema for apiVersion "${obj.apiVersion}" kind "${obj.kind}"`);
    return;
  }
  // Same validate function as `new cls(obj).validate()`, but run on the
  // tracking proxy of the original object (the model would copy it).
  const { proxy, info } = tracked(obj);
  try {
    cls.prototype.validate.call(proxy);
  } catch (e) {
    const list = Array.isArray(e.errors) ? e.errors : null;
    if (!list) {
      report(ctx, [], `schema validation failed: ${e.message}`);
      return;
    }
    // oneOf branches (quantities, int-or-string) report the same field
    // several times; one line per field.
    const byField = new Map();
    for (const err of list) {
      const segs = pointerSegments(obj, err.instancePath || '');
      let msg = err.message || err.keyword;
      if (err.keyword === 'required') segs.push(err.params.missingProperty);
      if (err.keyword === 'enum') msg += `: ${err.params.allowedValues.join(', ')}`;
      const key = fieldName(segs);
      if (!byField.has(key)) byField.set(key, { segs, msgs: [] });
      if (!byField.get(key).msgs.includes(msg)) byField.get(key).msgs.push(msg);
    }
    for (const { segs, msgs } of byField.values()) report(ctx, segs, `schema: ${msgs.join('; ')}`);
  }
  // The validator collects all errors, so it has visited every field even
  // when some failed.
  for (const segs of unknownFields(obj, info)) {
    report(ctx, segs, 'schema: unknown field (not in the Kubernetes schema; misspelt or misplaced?)');
  }
}

// ---- policy -----------------------------------------------------------------

const FORBIDDEN_VERBS = ['escalate', 'bind', 'impersonate'];
const BROAD_ROLES = ['cluster-admin', 'admin', 'edit'];

function checkRbacRole(ctx) {
  const rules = ctx.obj.rules || [];
  rules.forEach((rule, i) => {
    for (const field of ['apiGroups', 'resources', 'verbs', 'resourceNames', 'nonResourceURLs']) {
      (rule[field] || []).forEach((v, j) => {
        if (typeof v === 'string' && v.includes('*')) {
          report(ctx, ['rules', i, field, j], `RBAC wildcard "${v}" is not allowed: name each ${field === 'verbs' ? 'verb' : 'item'} explicitly`);
        }
      });
    }
    (rule.verbs || []).forEach((v, j) => {
      if (FORBIDDEN_VERBS.includes(v)) report(ctx, ['rules', i, 'verbs', j], `RBAC verb "${v}" lets the holder grant itself more rights`);
    });
    if (ctx.obj.kind === 'ClusterRole' && (rule.apiGroups || []).includes('') && (rule.resources || []).includes('secrets')) {
      report(ctx, ['rules', i, 'resources'], 'a ClusterRole must not grant Secrets (cluster-wide); use a Role in a namespace that opts in');
    } else if ((rule.apiGroups || []).includes('') && (rule.resources || []).includes('secrets')) {
      // Opt-in Role: only get, only named Secrets (list/watch would reveal all).
      if (!(rule.resourceNames || []).length) {
        report(ctx, ['rules', i, 'resources'], 'a Role granting Secrets must name them (resourceNames)');
      }
      (rule.verbs || []).forEach((v, j) => {
        if (v !== 'get') report(ctx, ['rules', i, 'verbs', j], `a Role granting Secrets may only "get" them, not "${v}"`);
      });
    }
  });
  if (ctx.obj.aggregationRule) report(ctx, ['aggregationRule'], 'aggregated ClusterRoles are not allowed: their rights are not visible here');
}

function checkRbacBinding(ctx) {
  const ref = ctx.obj.roleRef || {};
  if (ref.kind === 'ClusterRole' && BROAD_ROLES.includes(ref.name)) {
    report(ctx, ['roleRef', 'name'], `binding to the built-in "${ref.name}" ClusterRole is not allowed (least privilege)`);
  }
}

// Pod template (spec) of a workload, with the path to it.
function podSpecOf(obj) {
  switch (obj.kind) {
    case 'Pod': return { spec: obj.spec, at: ['spec'] };
    case 'DaemonSet': case 'Deployment': case 'StatefulSet': case 'ReplicaSet': case 'Job':
      return { spec: obj.spec && obj.spec.template && obj.spec.template.spec, at: ['spec', 'template', 'spec'] };
    case 'CronJob':
      return {
        spec: obj.spec && obj.spec.jobTemplate && obj.spec.jobTemplate.spec && obj.spec.jobTemplate.spec.template &&
          obj.spec.jobTemplate.spec.template.spec,
        at: ['spec', 'jobTemplate', 'spec', 'template', 'spec'],
      };
    default: return null;
  }
}

const SECRETISH = /(KEY|SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL)/i;

function checkWorkload(ctx) {
  const p = podSpecOf(ctx.obj);
  if (!p || !p.spec) return;
  for (const group of ['initContainers', 'containers']) {
    (p.spec[group] || []).forEach((c, i) => {
      const at = p.at.concat(group, i);
      if (typeof c.image !== 'string' || !c.image.trim()) report(ctx, at.concat('image'), `container "${c.name}" has no image`);
      (c.env || []).forEach((e, j) => {
        if (e && e.value !== undefined && SECRETISH.test(e.name || '') && !/_FILE$/.test(e.name)) {
          report(ctx, at.concat('env', j, 'value'),
            `env ${e.name} holds a literal value: take secrets from a Secret (valueFrom.secretKeyRef, or a mounted Secret and ${e.name}_FILE)`);
        }
      });
    });
  }
  if (ctx.obj.kind === 'DaemonSet') checkAgentDaemonSet(ctx, p.spec, p.at);
}

function checkAgentDaemonSet(ctx, spec, at) {
  const containers = spec.containers || [];
  const volumes = spec.volumes || [];
  const hostVol = (hostPath) => volumes.find((v) => v.hostPath && v.hostPath.path === hostPath);
  const idx = containers.findIndex((c) => (c.args || []).includes('agent') || (c.command || []).includes('agent'));
  if (idx < 0) {
    report(ctx, at.concat('containers'), 'no container runs "cairn agent" (args: [agent])');
    return;
  }
  const c = containers[idx];
  const cat = at.concat('containers', idx);
  const mountOf = (vol) => (c.volumeMounts || []).findIndex((m) => vol && m.name === vol.name);

  const pods = hostVol('/var/lib/kubelet/pods');
  if (!pods) {
    report(ctx, at.concat('volumes'), 'no hostPath volume for /var/lib/kubelet/pods');
  } else {
    const m = mountOf(pods);
    if (m < 0) report(ctx, cat.concat('volumeMounts'), `hostPath volume "${pods.name}" (/var/lib/kubelet/pods) is not mounted`);
    else if (c.volumeMounts[m].mountPropagation !== 'HostToContainer') {
      report(ctx, cat.concat('volumeMounts', m, 'mountPropagation'),
        `/var/lib/kubelet/pods must be mounted with mountPropagation HostToContainer (got ${JSON.stringify(c.volumeMounts[m].mountPropagation)}): volumes of pods started later are invisible otherwise`);
    }
  }
  const state = hostVol('/var/lib/cairn');
  if (!state) report(ctx, at.concat('volumes'), 'no hostPath volume for /var/lib/cairn (the catalog)');
  else if (mountOf(state) < 0) report(ctx, cat.concat('volumeMounts'), `hostPath volume "${state.name}" (/var/lib/cairn) is not mounted`);

  const env = c.env || [];
  const ni = env.findIndex((e) => e.name === 'NODE_NAME');
  if (ni < 0) report(ctx, cat.concat('env'), 'NODE_NAME is not set (downward API, fieldRef spec.nodeName)');
  else {
    const fr = env[ni].valueFrom && env[ni].valueFrom.fieldRef;
    if (!fr || fr.fieldPath !== 'spec.nodeName') report(ctx, cat.concat('env', ni), 'NODE_NAME must come from valueFrom.fieldRef.fieldPath: spec.nodeName');
  }

  const tol = spec.tolerations || [];
  if (!tol.some((t) => t.operator === 'Exists' && !t.key && !t.effect)) {
    report(ctx, at.concat('tolerations'), 'the agent must tolerate every taint (a toleration with operator: Exists and no key or effect)');
  }

  const res = c.resources || {};
  for (const kind of ['requests', 'limits']) {
    for (const r of ['cpu', 'memory']) {
      if (!res[kind] || res[kind][r] === undefined) report(ctx, cat.concat('resources'), `resources.${kind}.${r} is not set`);
    }
  }

  const ports = c.ports || [];
  for (const [probe, wantPath] of [['livenessProbe', '/healthz'], ['readinessProbe', '/readyz']]) {
    const pr = c[probe];
    const hg = pr && pr.httpGet;
    if (!hg) {
      report(ctx, cat.concat(probe), `${probe} must be an httpGet of ${wantPath}`);
      continue;
    }
    if (hg.path !== wantPath) report(ctx, cat.concat(probe, 'httpGet', 'path'), `${probe} must probe ${wantPath} (got ${JSON.stringify(hg.path)})`);
    if (typeof hg.port !== 'string' || !ports.some((pt) => pt.name === hg.port)) {
      report(ctx, cat.concat(probe, 'httpGet', 'port'), `${probe} must use a named container port (got ${JSON.stringify(hg.port)})`);
    }
  }
}

function checkPolicy(ctx) {
  switch (ctx.obj.kind) {
    case 'ClusterRole': case 'Role': checkRbacRole(ctx); break;
    case 'ClusterRoleBinding': case 'RoleBinding': checkRbacBinding(ctx); break;
    default: checkWorkload(ctx);
  }
}

// ---- kustomization ----------------------------------------------------------

const KUSTOMIZE_KEYS = new Set(['apiVersion', 'kind', 'resources', 'images', 'namespace', 'namePrefix', 'nameSuffix',
  'labels', 'commonLabels', 'commonAnnotations', 'patches', 'configMapGenerator', 'secretGenerator',
  'generatorOptions', 'components', 'replacements']);

function checkKustomization(ctx, dir, listedFiles) {
  const k = ctx.obj;
  if (k.apiVersion !== 'kustomize.config.k8s.io/v1beta1' || k.kind !== 'Kustomization') {
    report(ctx, ['apiVersion'], 'expected apiVersion kustomize.config.k8s.io/v1beta1, kind Kustomization');
  }
  for (const key of Object.keys(k)) if (!KUSTOMIZE_KEYS.has(key)) report(ctx, [key], 'unknown kustomization field');
  if (k.secretGenerator) report(ctx, ['secretGenerator'], 'secrets must not be generated from files in the repository');
  if (!Array.isArray(k.resources) || !k.resources.length) {
    report(ctx, ['resources'], 'no resources listed');
    return;
  }
  const listed = new Set();
  k.resources.forEach((r, i) => {
    const p = path.join(dir, String(r));
    if (!fs.existsSync(p)) report(ctx, ['resources', i], `listed resource "${r}" does not exist`);
    else if (fs.statSync(p).isDirectory()) {
      if (!['kustomization.yaml', 'kustomization.yml', 'Kustomization'].some((f) => fs.existsSync(path.join(p, f)))) {
        report(ctx, ['resources', i], `listed directory "${r}" has no kustomization.yaml`);
      }
    } else {
      if (listed.has(path.normalize(p))) report(ctx, ['resources', i], `resource "${r}" is listed twice`);
      listed.add(path.normalize(p));
      listedFiles.push(path.normalize(p));
    }
  });
  for (const f of yamlFiles(dir)) {
    const base = path.basename(f);
    if (/^kustomization\.ya?ml$/.test(base) || /\.example\.ya?ml$/.test(base)) continue;
    if (!listed.has(path.normalize(f))) {
      report(ctx, ['resources'], `${base} is not listed in resources (list it, or rename it *.example.yaml if it must not be applied)`);
    }
  }
}

// ---- driver -----------------------------------------------------------------

function yamlFiles(dir) {
  return fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort().map((f) => path.join(dir, f))
    .filter((f) => fs.statSync(f).isFile());
}

// Parses a file into contexts {file, doc, lines, obj}; syntax errors reported.
function loadFile(file) {
  const text = fs.readFileSync(file, 'utf8');
  const lines = new YAML.LineCounter();
  const docs = YAML.parseAllDocuments(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const out = [];
  for (const doc of docs) {
    const ctx = { file, doc, lines, obj: null };
    if (doc.errors.length) {
      for (const e of doc.errors) {
        const line = e.pos ? lines.linePos(e.pos[0]).line : 1;
        errors.push(`${file}:${line}: YAML: ${e.message.split('\n')[0]}`);
      }
      continue;
    }
    const obj = doc.toJS({ maxAliasCount: 0 });
    if (obj === null || obj === undefined) continue; // empty document
    ctx.obj = obj;
    if (typeof obj !== 'object' || Array.isArray(obj)) {
      report(ctx, [], 'a manifest must be a mapping');
      continue;
    }
    out.push(ctx);
  }
  return out;
}

function main(argv) {
  let list = false;
  const paths = [];
  for (const a of argv) {
    if (a === '--list') list = true;
    else if (a === '-h' || a === '--help') {
      console.log('usage: node validate.js [--list] FILE|DIR...');
      return 0;
    } else if (a.startsWith('-')) {
      console.error(`validate.js: unknown option ${a}`);
      return 2;
    } else paths.push(a);
  }
  if (!paths.length) {
    console.error('usage: node validate.js [--list] FILE|DIR...');
    return 2;
  }
  const applied = [];
  for (const p of paths) {
    if (!fs.existsSync(p)) {
      errors.push(`${p}: no such file or directory`);
      continue;
    }
    const isDir = fs.statSync(p).isDirectory();
    const files = isDir ? yamlFiles(p) : [p];
    if (!files.length) errors.push(`${p}: no *.yaml files`);
    const listedFiles = [];
    let kustomized = false;
    for (const f of files) {
      for (const ctx of loadFile(f)) {
        if (ctx.obj.kind === 'Kustomization') {
          kustomized = true;
          checkKustomization(ctx, path.dirname(f), listedFiles);
          continue;
        }
        objectsChecked++;
        validateSchema(ctx);
        checkPolicy(ctx);
      }
    }
    // What `kubectl apply` would create from this path.
    const appliedFiles = kustomized ? listedFiles : files;
    for (const f of appliedFiles) {
      if (!fs.existsSync(f)) continue;
      for (const ctx of loadFile(f)) {
        if (ctx.obj.kind === 'Kustomization') continue;
        if (ctx.obj.kind === 'Secret' && kustomized) {
          report(ctx, ['kind'], 'a Secret must not be applied from the repository (keep it as *.example.yaml, unlisted)');
        }
        const md = ctx.obj.metadata || {};
        applied.push(`${ctx.obj.kind} ${md.namespace || '-'}/${md.name}`);
      }
    }
  }
  if (list) for (const a of applied.sort()) console.log(a);
  // Parse errors are reported once per load; drop duplicates from reloads.
  const uniq = [...new Set(errors)];
  for (const e of uniq) console.error(e);
  if (uniq.length) {
    console.error(`validate.js: ${uniq.length} error(s) in ${paths.join(' ')}`);
    return 1;
  }
  console.error(`validate.js: ${objectsChecked} object(s) valid in ${paths.join(' ')}`);
  return 0;
}

process.exitCode = main(process.argv.slice(2));
