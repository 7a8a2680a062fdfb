/**
 * The stages of an SMTP session, in the order a client meets them (docs/design.md §2).
 * Stage names appear here and nowhere else: every other module imports `Stage`.
 */
export const STAGES = ['connect', 'helo', 'mail', 'rcpt', 'data', 'body', 'relay', 'quit'] as const;

export type Stage = (typeof STAGES)[number];

/** A stage's position in STAGES, for arrays indexed by stage without a search. */
export const STAGE_INDEX = Object.fromEntries(STAGES.map((s, i) => [s, i])) as Readonly<Record<Stage, number>>;

