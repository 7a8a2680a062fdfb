/**
 * Whether a YAML file holds nothing: 0 bytes, blanks, comments or bare
 * document markers. Loaders read such a file as "all defaults", but on a
 * running proxy it is almost always a failed copy or an editor's crash
 * (issue 12), so the config and policy loaders refuse it.
 */
import { isScalar, parseDocument } from 'yaml';

export function isEmptyYaml(text: string): boolean {
  // Cheap for the usual case: any line that is not blank or a comment may hold a setting.
  if (/^[ \t]*[^\s#]/m.test(text) && !/^(?:---|\.\.\.)[ \t]*(?:#.*)?$/m.test(text)) return false;
  const doc = parseDocument(text);
  // A bare `---` gives an empty scalar rather than no content; a written `~` or `null` is a value, refused elsewhere.
  return doc.errors.length === 0 && (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null && doc.contents.source === ''));
}
