/**
 * Reads a policy directory (`policy.yaml` and the list files it names),
 * validates it and compiles it into the frozen Policy every check reads
 * (src/policy/spec.ts). Validation and compilation only: what a check does
 * with the policy lives in the check.
 *
 * Every mistake is reported at once, located at file:line:column and its key,
 * whether it is in the YAML (schema or meaning) or in a list file, so an admin
 * fixes a broken reload in one pass.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import type { ErrorObject } from 'ajv';
import { YamlFile, compileSchema, schemaIssues, type Located, type YamlPath, deepFreeze } from '../config/yaml-schema.js';
import { isEmptyYaml } from '../config/empty-file.js';
import { withoutTrailingDot } from './dns/query-name.js';
import { buildFromText, type ListJob, type ListNote, type ListOutcome } from './lists/cidr-build.js';
import { cidrListFromData, compileCidrList, type CidrList } from './lists/cidr-list.js';
import { compileListsOffThread } from './lists/compile-off-thread.js';
import { AnswerRangeError, parseAnswerRange } from './lists/answer-range.js';
import { PolicyError, PolicyErrors, policyWarning, type PolicyWarning } from './policy-error.js';
import { KNOWN_SENDER_SUFFIXES, POLICY_SCHEMA, type RawPolicy, type RawProfile, type RawZone } from './schema.js';
import type { AnswerRange, DnsZone, Policy, TarpitProfile } from './spec.js';
import { longestReply, type Wait } from '../tarpit/hold-commands.js';

/** The main file's name in a policy directory. */
export const POLICY_FILE = 'policy.yaml';

/** A list file with more bad lines than this is probably not a list: the rest are summed up in one line. */
const MAX_LIST_ERRORS = 20;

/** Longer first-contact greetings lose real MTAs (docs/design.md §2: some time a greeting out at 30 s). */
const GREETING_PATIENCE = 30;
/** Seconds RFC 5321 §4.5.3.2 tells a client to wait for each reply (and Postfix's smtp client does): 5 min, DATA's 2 min. */
const MTA_PATIENCE: Readonly<Record<Wait, number>> = { banner: 300, helo: 300, mail: 300, rcpt: 300, data: 120, other: 300 };
const WAITS = Object.keys(MTA_PATIENCE) as Wait[];

export interface LoadedPolicy {
  readonly policy: Policy;
  /** Accepted but doubtful lines (host bits set, duplicates, unused profiles); `check` and reloads print them. */
  readonly warnings: readonly PolicyWarning[];
  /** Absolute paths of every file the policy was read from, for a file watch. */
  readonly files: readonly string[];
}

export interface PolicyTextOptions {
  /** The policy directory: list files are read relative to it. */
  readonly dir: string;
  /** The main file as messages name it; default `<dir>/policy.yaml`. */
  readonly file?: string;
  /** Reads a list file (absolute path) as text; default the file system. Tests hand lists in without files. */
  readonly readFile?: (path: string) => string;
}

/** Compiles list files, in order; the default moves them to a worker thread (compile-off-thread.ts). */
export type ListCompiler = (jobs: readonly ListJob[]) => Promise<ListOutcome[]>;

/**
 * A 0-byte or comment-only policy.yaml is an editor's crash or a failed copy
 * far more often than a wish for the defaults, and loading it would drop the
 * allow and block lists (issue 12): refused like any invalid file.
 */
const EMPTY_POLICY = 'the file is empty (nothing but blanks or comments): a policy with no settings would drop every list, so it is refused';

const validate = compileSchema(POLICY_SCHEMA);

/** Loads `<dir>/policy.yaml` and its lists; throws PolicyErrors naming every mistake. */
export function loadPolicyDir(dir: string): Policy {
  return loadPolicyDirWithWarnings(dir).policy;
}

export function loadPolicyDirWithWarnings(dir: string): LoadedPolicy {
  const file = join(dir, POLICY_FILE);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new PolicyErrors([new PolicyError(file, undefined, undefined, '', `cannot read: ${readFailure(err)}`)]);
  }
  refuseEmpty(text, file);
  return loadPolicyText(text, { dir, file });
}

/**
 * loadPolicyDirWithWarnings for a running proxy: every file read without
 * blocking and the lists compiled by `compileLists`, so no step holds the
 * event loop for long whatever the lists' size. Same checks, same errors.
 */
export async function loadPolicyDirOffThread(dir: string, compileLists: ListCompiler = compileListsOffThread): Promise<LoadedPolicy> {
  const file = join(dir, POLICY_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new PolicyErrors([new PolicyError(file, undefined, undefined, '', `cannot read: ${readFailure(err)}`)]);
  }
  refuseEmpty(text, file);
  const loader = prepare(text, { dir, file });
  const files = loader.listFiles();
  const read = await Promise.all(
    files.map((f) =>
      readFile(f.absolute).then(
        (bytes): { bytes: Uint8Array } | { failure: string } => ({ bytes }),
        (err: unknown) => ({ failure: readFailure(err) }),
      ),
    ),
  );
  const jobs: ListJob[] = [];
  for (const [i, r] of read.entries()) if ('bytes' in r) jobs.push({ bytes: r.bytes, source: files[i]?.shown ?? '', maxErrors: MAX_LIST_ERRORS });
  const outcomes = await compileLists(jobs);
  const reads = new Map<string, ListRead>();
  let next = 0;
  for (const [i, f] of files.entries()) {
    const r = read[i];
    if (r === undefined) continue;
    if ('failure' in r) reads.set(f.key, { file: f, failure: r.failure });
    else reads.set(f.key, { file: f, outcome: outcomes[next++] ?? { ok: false, errors: [{ line: 1, column: 1, kind: 'error', reason: 'not compiled' }] } });
  }
  return finish(loader, reads);
}

export function loadPolicyText(text: string, options: PolicyTextOptions): LoadedPolicy {
  const loader = prepare(text, options);
  const reads = new Map<string, ListRead>();
  for (const f of loader.listFiles()) reads.set(f.key, readListSync(f, options.readFile));
  return finish(loader, reads);
}

function refuseEmpty(text: string, file: string): void {
  if (isEmptyYaml(text)) throw new PolicyErrors([new PolicyError(file, 1, 1, '', EMPTY_POLICY)]);
}

/** policy.yaml parsed and checked against the schema; the lists it names are read next, then finish() compiles. */
function prepare(text: string, options: PolicyTextOptions): Loader {
  const file = options.file ?? join(options.dir, POLICY_FILE);
  const yaml = YamlFile.parse(text, file);
  if (yaml.value === undefined) throw new PolicyErrors(yaml.issues.map((l) => PolicyError.from(l)));
  const raw = yaml.value;
  const schemaErrors = schemaIssues(validate(raw), yaml, { schemaFile: 'policies/policy.schema.json', reason: policyReason });
  const loader = new Loader(yaml, raw, options, schemaErrors.map((e) => e.path.join('.')));
  loader.errors.push(...schemaErrors);
  loader.warnings.push(...yaml.warnings);
  return loader;
}

function finish(loader: Loader, reads: ReadonlyMap<string, ListRead>): LoadedPolicy {
  const compiled = loader.compile(reads);
  if (loader.errors.length > 0 || compiled === undefined) throw new PolicyErrors(sorted(loader.errors).map((l) => PolicyError.from(l)));
  return {
    policy: deepFreeze(compiled),
    warnings: Object.freeze(loader.warnings.map(policyWarning)),
    files: Object.freeze([resolve(loader.file), ...loader.files]),
  };
}

/** A list file policy.yaml names: the key naming it, where, and the path messages show. */
interface ListFile {
  readonly key: string;
  readonly namePath: YamlPath;
  readonly absolute: string;
  readonly shown: string;
}

/** A list file read and compiled, or why it could not be read. */
type ListRead = { readonly file: ListFile; readonly failure: string } | { readonly file: ListFile; readonly outcome: ListOutcome };

function readListSync(file: ListFile, readText: ((path: string) => string) | undefined): ListRead {
  let text: string;
  try {
    text = (readText ?? ((p: string) => readFileSync(p, 'utf8')))(file.absolute);
  } catch (err) {
    return { file, failure: readFailure(err) };
  }
  return { file, outcome: buildFromText(text, file.shown, MAX_LIST_ERRORS) };
}

/** The keys that name list files, in the order they are compiled (and `files` lists them). */
const LIST_KEYS: readonly YamlPath[] = [
  ['lists', 'allow'],
  ['lists', 'block'],
  ['knownSenders', 'networks'],
];

function policyReason(e: ErrorObject, path: YamlPath): string | undefined {
  const last = path[path.length - 1];
  if (e.keyword === 'anyOf' && last === 'end') return 'must be allowlist, relay, or {reply: 421, 451 or 554, text: "..."}';
  if (e.keyword === 'anyOf' && last === 'allow') return 'must be a file name, or {file: name}';
  if (e.keyword === 'propertyNames') return 'profile names are letters, digits, -, _ and dots, starting with a letter or digit, at most 64 long';
  if (e.keyword === 'pattern' && last === 'text') return 'must be printable ASCII on one line';
  return undefined;
}

/** Holds one load's findings; each step adds what it finds and goes on, so every mistake is reported. */
class Loader {
  readonly errors: Located[] = [];
  readonly warnings: Located[] = [];
  readonly files: string[] = [];

  constructor(
    private readonly yaml: YamlFile,
    private readonly raw: Record<string, unknown>,
    private readonly options: PolicyTextOptions,
    /** Keys the schema already refused: checks that read them stay quiet rather than repeat or guess. */
    private readonly refused: readonly string[],
  ) {}

  get file(): string {
    return this.yaml.file;
  }

  /** The list files the policy names, where the schema accepted the key naming them. */
  listFiles(): ListFile[] {
    const found: ListFile[] = [];
    for (const path of LIST_KEYS) {
      const name = this.listFileName(path);
      if (name === undefined || !this.clean(path)) continue;
      const namePath = typeof this.get(path) === 'string' ? path : [...path, 'file'];
      found.push({ key: path.join('.'), namePath, absolute: resolve(this.options.dir, name), shown: isAbsolute(name) ? name : join(this.options.dir, name) });
    }
    return found;
  }

  /** The Policy, or undefined when anything was wrong (the errors say what). `reads` holds every file listFiles() named. */
  compile(reads: ReadonlyMap<string, ListRead>): Policy | undefined {
    this.checkThresholds();
    this.checkGreylisting();
    const profiles = this.compileProfiles();
    const firstContactProfile = this.profileRef(['firstContact', 'profile'], profiles);
    const tarpitProfile = this.profileRef(['tarpit', 'profile'], profiles);
    this.warnAboutProfiles(profiles, firstContactProfile);
    const allow = this.compileList(['lists', 'allow'], reads);
    const block = this.compileList(['lists', 'block'], reads);
    const knownNetworks = this.compileList(['knownSenders', 'networks'], reads);
    const dnsbl = this.compileZones('dnsbl');
    const dnswl = this.compileZones('dnswl');
    const known = this.compileKnownSenders();
    if (this.errors.length > 0 || !firstContactProfile || !tarpitProfile || !allow || !block || !knownNetworks || !known || !dnsbl || !dnswl) return undefined;

    // No errors: the schema accepted every shape and filled every default.
    const r = this.raw as unknown as RawPolicy;
    return {
      dir: resolve(this.options.dir),
      file: resolve(this.yaml.file),
      thresholds: { tarpit: r.verdicts.tarpit, reject: r.verdicts.reject, drop: r.verdicts.drop },
      rejectAt: r.verdicts.rejectAt,
      tarpitProfile,
      lists: { allow, block: { list: block, weight: r.lists.block?.weight ?? blockWeightDefault() } },
      dnsbl,
      dnswl,
      rdns: { ...r.rdns },
      helo: { ...r.helo },
      firstContact: { enabled: r.firstContact.enabled, profile: firstContactProfile, minRetryDelay: r.firstContact.minRetryDelay, earlyRetry: r.firstContact.earlyRetry },
      knownSenders: { ...known, networks: knownNetworks },
      pregreet: r.pregreet,
      protocol: { ...r.protocol },
      harvest: { ...r.harvest },
      rate: { group: { ...r.rate.group }, maxConcurrent: r.rate.maxConcurrent, maxPerMinute: r.rate.maxPerMinute, weight: r.rate.weight },
      allowlistCache: { ttl: r.allowlistCache.ttl, maxEntries: r.allowlistCache.maxEntries, network: { ...r.allowlistCache.network } },
      greylisting: this.compileGreylisting(r.greylisting),
      reputation: { ...r.reputation },
      profiles: frozenMap(profiles),
    };
  }

  private checkThresholds(): void {
    const tarpit = this.number(['verdicts', 'tarpit']);
    const reject = this.number(['verdicts', 'reject']);
    const drop = this.number(['verdicts', 'drop']);
    if (tarpit !== undefined && reject !== undefined && reject < tarpit) {
      this.error(['verdicts', 'reject'], `must be at least verdicts.tarpit (${tarpit}): a higher score never gets a milder verdict`);
    }
    if (reject !== undefined && drop !== undefined && drop < reject) {
      this.error(['verdicts', 'drop'], `must be at least verdicts.reject (${reject}): a higher score never gets a milder verdict`);
    } else if (reject === undefined && tarpit !== undefined && drop !== undefined && drop < tarpit) {
      this.error(['verdicts', 'drop'], `must be at least verdicts.tarpit (${tarpit}): a higher score never gets a milder verdict`);
    }
  }

  /**
   * `knownSenders`, or the deprecated `greylisting.exempt` it replaced (issue
   * 11) when only that is written: its clients now skip the first-contact
   * hold too, which is why it moved. Both written is a mistake, reported.
   */
  private compileKnownSenders(): Omit<Policy['knownSenders'], 'networks'> | undefined {
    const oldPath = ['greylisting', 'exempt'];
    const known = ['knownSenders'];
    const old = this.yaml.written(oldPath) && this.clean(oldPath);
    if (old && this.yaml.written(known)) {
      this.error(oldPath, 'moved to knownSenders, which this file sets too: move its entries there and remove greylisting.exempt');
      return undefined;
    }
    if (old) {
      this.warnings.push(
        this.yaml.issue(oldPath, 'deprecated: rename to knownSenders (a top-level key, same entries); known senders now skip the first-contact hold as well as greylisting', 'key'),
      );
    }
    const from = old ? oldPath : known;
    if (!this.clean(from)) return undefined;
    const suffixes = this.get([...from, 'rdnsSuffixes']);
    const trustedBelow = this.get([...from, 'trustedBelow']);
    return {
      rdnsSuffixes: this.compileSuffixes([...from, 'rdnsSuffixes'], Array.isArray(suffixes) ? (suffixes as string[]) : KNOWN_SENDER_SUFFIXES),
      trustedBelow: typeof trustedBelow === 'number' ? trustedBelow : knownDefault('trustedBelow'),
    };
  }

  /** Suffixes in one spelling (lower case, no dots at either end), so the check compares names as they are. */
  private compileSuffixes(path: YamlPath, raw: readonly string[]): string[] {
    return raw.map((written, i) => {
      const suffix = withoutTrailingDot(written.toLowerCase()).replace(/^\.+/, '');
      const problem = zoneNameProblem(suffix);
      // One label ("com") would vouch for a whole top-level domain: almost surely a mistake, but a valid one.
      if (problem && suffix.includes('.')) this.error([...path, String(i)], problem.replace('DNS zone name', 'domain name'));
      else if (problem) this.warnings.push(this.yaml.issue([...path, String(i)], `"${suffix}" vouches for every client name under it`));
      return suffix;
    });
  }

  private compileGreylisting(g: RawPolicy['greylisting']): Policy['greylisting'] {
    return { enabled: g.enabled, minDelay: g.minDelay, pendingExpiry: g.pendingExpiry, passedExpiry: g.passedExpiry, network: { ...g.network } };
  }

  /** A retry is accepted after minDelay and before pendingExpiry: with the two the wrong way round, nothing ever passes. */
  private checkGreylisting(): void {
    const minDelay = this.number(['greylisting', 'minDelay']);
    const pending = this.number(['greylisting', 'pendingExpiry']);
    if (minDelay !== undefined && pending !== undefined && pending <= minDelay) {
      this.error(['greylisting', 'pendingExpiry'], `must be longer than greylisting.minDelay (${minDelay} s): a retry must be able to come after the one and before the other`);
    }
  }

  private compileProfiles(): Map<string, TarpitProfile> {
    const profiles = new Map<string, TarpitProfile>();
    const all = this.get(['profiles']);
    if (!isRecord(all)) return profiles;
    for (const name of Object.keys(all)) {
      const path = ['profiles', name];
      if (!this.clean(path)) continue;
      const p = all[name] as RawProfile;
      if (typeof p.end === 'object') {
        // An enhanced status code of the wrong class confuses clients and log readers alike.
        const enhanced = /^([245])\.\d{1,3}\.\d{1,3}(?:\s|$)/.exec(p.end.text);
        const replyClass = String(p.end.reply)[0];
        if (enhanced && enhanced[1] !== replyClass) {
          this.error([...path, 'end', 'text'], `enhanced status code ${enhanced[0].trim()} does not match reply ${p.end.reply} (write ${replyClass}.x.x)`);
        }
      }
      if (p.end === 'relay') {
        // The hand-over happens before the banner: a delay at any later stage would never be served.
        for (const wait of ['helo', 'mail', 'rcpt', 'data', 'other'] as const) {
          if (p.delays[wait] !== 0) this.error([...path, 'delays', wait], 'must be 0 with end: relay (the client is handed to the relay path after the banner delay)');
        }
      }
      this.checkPatience(path, p);
      profiles.set(name, {
        name,
        delays: { ...p.delays },
        stutter: p.stutter,
        jitter: p.jitter,
        maxHold: p.maxHold,
        end: typeof p.end === 'string' ? { kind: p.end } : { kind: 'reply', code: p.end.reply, text: p.end.text },
      });
    }
    return profiles;
  }

  /**
   * A profile meant to let patient senders through must never outwait them:
   * each wait at its longest (delay times 1 + jitter, plus the time to trickle
   * its longest reply at the stutter rate) stays within what RFC 5321
   * §4.5.3.2 tells a client to wait for that reply.
   */
  private checkPatience(path: YamlPath, p: RawProfile): void {
    let total = 0;
    for (const wait of WAITS) {
      const delay = p.delays[wait] * (1 + p.jitter);
      const trickle = p.stutter > 0 ? longestReply(wait) / p.stutter : 0;
      total += p.delays[wait] * (1 - p.jitter) + trickle;
      const limit = MTA_PATIENCE[wait];
      if (delay + trickle <= limit) continue;
      const parts = [`${p.delays[wait]} s`];
      if (p.jitter > 0) parts.push(`jitter up to ${round(p.delays[wait] * p.jitter)} s`);
      if (trickle > 0) parts.push(`${round(trickle)} s to stutter a ${longestReply(wait)}-byte reply at ${p.stutter} B/s`);
      // Point at what pushed it over: the delay itself when it is too long alone, else stutter or jitter.
      const culprit = p.delays[wait] > limit ? ['delays', wait] : delay > limit ? ['jitter'] : ['stutter'];
      // The sum is worth spelling out only when there is one; the delay alone would read "130 s (130 s)".
      const sum = parts.length > 1 ? ` (${parts.join(' + ')})` : '';
      this.error(
        [...path, ...culprit],
        `the ${wait} reply can take ${round(delay + trickle)} s${sum}; a patient MTA waits ${limit} s for it (RFC 5321 §4.5.3.2)`,
      );
    }
    if (total > p.maxHold && this.yaml.written([...path, 'maxHold'])) {
      this.warnings.push(this.yaml.issue([...path, 'maxHold'], `shorter than the profile's delays (${round(total)} s at least): no client can sit the hold out`));
    }
  }

  private profileRef(path: YamlPath, profiles: ReadonlyMap<string, TarpitProfile>): TarpitProfile | undefined {
    const name = this.get(path);
    // Profiles the schema refused wholesale were reported already.
    if (typeof name !== 'string' || !this.clean(path) || !this.clean(['profiles'])) return undefined;
    const profile = profiles.get(name);
    const all = this.get(['profiles']);
    // A profile refused by the schema was reported already; naming it is not a second mistake.
    if (profile === undefined && !(isRecord(all) && Object.hasOwn(all, name))) {
      const known = isRecord(all) ? Object.keys(all) : [];
      const defaulted = this.yaml.written(path) ? '' : ' (the default; set it to one of yours)';
      this.error(path, `no profile named "${name}" under profiles${defaulted}${known.length > 0 ? `; profiles: ${known.join(', ')}` : ''}`);
    }
    return profile;
  }

  private warnAboutProfiles(profiles: ReadonlyMap<string, TarpitProfile>, firstContact: TarpitProfile | undefined): void {
    const used = new Set([this.get(['firstContact', 'profile']), this.get(['tarpit', 'profile'])]);
    for (const name of profiles.keys()) {
      if (!used.has(name)) this.warnings.push(this.yaml.issue(['profiles', name], 'not used by firstContact.profile nor tarpit.profile', 'key'));
    }
    if (firstContact && this.get(['firstContact', 'enabled']) === true && firstContact.delays.banner > GREETING_PATIENCE) {
      this.warnings.push(
        this.yaml.issue(
          ['profiles', firstContact.name, 'delays', 'banner'],
          `${firstContact.delays.banner} s before the greeting of a first contact: some real MTAs give up after ${GREETING_PATIENCE} s; spread the hold over the stages instead`,
        ),
      );
    }
  }

  /** The list file a `lists.*` key names, or undefined for no list (or a refused key). */
  private listFileName(path: YamlPath): string | undefined {
    const value = this.get(path);
    if (typeof value === 'string') return value;
    const file = this.get([...path, 'file']);
    return typeof file === 'string' ? file : undefined;
  }

  private compileList(path: YamlPath, reads: ReadonlyMap<string, ListRead>): CidrList | undefined {
    if (!this.clean(path)) return undefined;
    const key = path.join('.');
    const read = reads.get(key);
    if (read === undefined) return compileCidrList([], `${key} (none)`);
    const { file } = read;
    if ('failure' in read) {
      this.errors.push({ ...this.yaml.issue(file.namePath, `cannot read ${file.shown}: ${read.failure}`), key });
      return undefined;
    }
    this.files.push(file.absolute);
    const at = (n: ListNote): Located => ({ file: file.shown, line: n.line, column: n.column, key, reason: n.reason });
    const { outcome } = read;
    if (!outcome.ok) {
      this.errors.push(...outcome.errors.map(at));
      return undefined;
    }
    // Host bits and duplicates were found by the compile, which sees every line once.
    this.warnings.push(...outcome.warnings.map(at));
    return cidrListFromData(outcome.data, file.shown, outcome.warnings);
  }

  private compileZones(key: 'dnsbl' | 'dnswl'): DnsZone[] | undefined {
    const zones = this.get([key]);
    if (!Array.isArray(zones)) return undefined;
    const compiled: DnsZone[] = [];
    const seen = new Map<string, number>();
    let ok = true;
    zones.forEach((z: unknown, i) => {
      const path = [key, String(i)];
      if (!isRecord(z) || !this.clean(path)) {
        ok = false;
        return;
      }
      const zone = z as unknown as RawZone;
      const name = withoutTrailingDot(zone.zone.toLowerCase());
      const problem = zoneNameProblem(name);
      if (problem) this.error([...path, 'zone'], problem);
      const earlier = seen.get(name);
      if (earlier !== undefined) this.error([...path, 'zone'], `${name} is already ${key}.${earlier}: its weight would count twice`);
      seen.set(name, i);
      if (key === 'dnsbl' && zone.weight < 0) this.warnings.push(this.yaml.issue([...path, 'weight'], 'negative weight on a blocklist lowers the score of listed clients; did you mean dnswl?'));
      if (key === 'dnswl' && zone.weight > 0) this.warnings.push(this.yaml.issue([...path, 'weight'], 'positive weight on an allowlist raises the score of listed clients; did you mean dnsbl?'));
      const answers: AnswerRange[] = [];
      zone.answers.forEach((text, j) => {
        try {
          const parsed = parseAnswerRange(text);
          answers.push(parsed.range);
          if (parsed.warning) this.warnings.push(this.yaml.issue([...path, 'answers', String(j)], parsed.warning));
        } catch (err) {
          if (!(err instanceof AnswerRangeError)) throw err;
          this.error([...path, 'answers', String(j)], err.reason);
        }
      });
      compiled.push({ zone: name, weight: zone.weight, answers, timeout: zone.timeout });
    });
    return ok ? compiled : undefined;
  }

  private error(path: YamlPath, reason: string): void {
    this.errors.push(this.yaml.issue(path, reason));
  }

  private get(path: YamlPath): unknown {
    let value: unknown = this.raw;
    for (const segment of path) {
      if (!isRecord(value) && !Array.isArray(value)) return undefined;
      if (!Object.hasOwn(value, segment)) return undefined;
      value = (value as Record<string, unknown>)[segment];
    }
    return value;
  }

  private number(path: YamlPath): number | undefined {
    const value = this.get(path);
    return typeof value === 'number' && this.clean(path) ? value : undefined;
  }

  /** True when the schema refused nothing at, above or below `path`. */
  private clean(path: YamlPath): boolean {
    const key = path.join('.');
    return !this.refused.some((r) => r === key || key.startsWith(`${r}.`) || r.startsWith(`${key}.`) || (r === '' && key !== ''));
  }
}

function blockWeightDefault(): number {
  return POLICY_SCHEMA.properties.lists.properties.block.properties.weight.default;
}

function knownDefault(key: 'trustedBelow'): number {
  return POLICY_SCHEMA.properties.knownSenders.properties[key].default;
}

const LABEL = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

function zoneNameProblem(name: string): string | undefined {
  if (name.length === 0 || name.length > 253) return 'must be a DNS zone name of 1 to 253 characters';
  const labels = name.split('.');
  if (labels.length < 2) return 'must be a DNS zone name with at least one dot, such as zen.spamhaus.org';
  if (labels.includes('')) return 'has an empty label (two dots in a row, or a leading dot)';
  const bad = labels.find((l) => !LABEL.test(l));
  if (bad !== undefined) return `"${bad}" is not a DNS label (letters, digits, - and _, at most 63, no - at either end)`;
  return undefined;
}

function readFailure(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EISDIR') return 'is a directory, not a file';
  if (code === 'EACCES') return 'permission denied';
  return (err as Error).message;
}

/** File by file (policy.yaml first, then lists in the order they were read), each in line order. */
function sorted(errors: readonly Located[]): Located[] {
  const files = [...new Set(errors.map((e) => e.file))];
  return [...errors].sort((a, b) => files.indexOf(a.file) - files.indexOf(b.file) || (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0));
}

/** Seconds to one decimal, for messages. */
function round(seconds: number): number {
  return Math.round(seconds * 10) / 10;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** A Map whose writers throw, so a policy shared by every session cannot be changed by one. */
function frozenMap<K, V>(map: Map<K, V>): ReadonlyMap<K, V> {
  const refuse = (): never => {
    throw new TypeError('the policy is read-only');
  };
  Object.defineProperties(map, { set: { value: refuse }, delete: { value: refuse }, clear: { value: refuse } });
  for (const value of map.values()) deepFreeze(value);
  return Object.freeze(map);
}

