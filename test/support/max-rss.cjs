// Preloaded (node --require) into a CLI run by a test: writes the process's peak RSS, in KiB,
// to the file named by HOPGUARD_TEST_MAX_RSS_FILE as it exits, however it exits.
const { writeFileSync } = require('node:fs');

process.on('exit', () => {
  writeFileSync(process.env.HOPGUARD_TEST_MAX_RSS_FILE, String(process.resourceUsage().maxRSS));
});
