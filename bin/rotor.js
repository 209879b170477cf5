#!/usr/bin/env node
'use strict';
// Entry point of the `rotor` command. The TypeScript sources compile to dist/ when
// `npm install` runs the package's prepare script.
const path = require('node:path');
const fs = require('node:fs');

// The AWS SDK warns on every start that releases after January 2027 will need Node 22. Rotor
// pins an SDK release that supports Node 20, so the warning only adds noise to the output.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const main = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
if (!fs.existsSync(main)) {
  console.error(`rotor is not built: ${main} is missing. Run \`npm install\` (or \`npm run build\`) in ${path.dirname(__dirname)}.`);
  process.exit(2);
}
require(main);
