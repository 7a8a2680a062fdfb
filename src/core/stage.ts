/**
 * The stages of an SMTP session, in the order a client meets them (DESIGN §2).
 * Stage names appear here and nowhere else: every other module imports `Stage`.
 */
export const STAGES = ['connect', 'helo', 'mail', 'rcpt', 'data', 'body', 'relay', 'quit'] as const;

export type Stage = (typeof STAGES)[number];

