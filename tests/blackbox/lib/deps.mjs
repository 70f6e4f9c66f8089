// What the black-box tests need besides the built programs: the npm test
// dependencies (openai, playwright-core) and a few Debian tools. scripts/test
// installs all of them, so a missing one fails the test that needs it with a
// message saying how to get it; it is never a silent skip.
//
// npm packages come from SC_NODE_MODULES (set by configure: the source tree's
// tests/node_modules, where scripts/test runs `npm ci`), so a build tree
// elsewhere (make distcheck) finds them too.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import path from 'node:path';

export const NODE_MODULES = process.env.SC_NODE_MODULES
	|| new URL('../../node_modules', import.meta.url).pathname;
const req = createRequire(path.join(NODE_MODULES, '..', 'resolve-from-here.js'));

// require() an npm test dependency, or throw saying how to install it.
export function dep(name) {
	try {
		return req(name);
	} catch (e) {
		throw new Error(`npm test dependency "${name}" not found under ${NODE_MODULES} `
			+ `(run scripts/test, or: cd tests && npm ci): ${e.message}`);
	}
}

// Throw unless every [path, what] exists.
export function requireFiles(list) {
	for (const [file, what] of list)
		if (!file || !existsSync(file))
			throw new Error(`${what} not found${file ? ` at ${file}` : ''} (run scripts/test, which installs and builds it)`);
}
