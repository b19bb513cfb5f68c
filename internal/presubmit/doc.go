// Package presubmit holds tests of the house conventions ("House
// conventions" in ../../docs/architecture.md): every package documents
// itself and every exported name has a doc comment that starts with it;
// the import layers; the architecture map's file lists; the deploy files
// and scripts; and every test that docs/security.md cites exists. It has
// no code of its own.
package presubmit
