// Package presubmit holds tests of the house conventions (see
// ../../docs/architecture.md and the style guide): every package documents
// itself, and every exported name has a doc comment that starts with it.
// It has no code of its own.
package presubmit
