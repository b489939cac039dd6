// Validate one .glb/.gltf file with the Khronos glTF-Validator and print its report as JSON.
// Usage: NODE_PATH=<folder holding gltf-validator> node tests/gltf_validate.js FILE
// The pytest helper in test_export.py runs this; node resolves the module through NODE_PATH so
// the validator can live outside the repository (.tools/node_modules or a shared install).
'use strict';
const fs = require('fs');
const validator = require('gltf-validator');

const file = process.argv[2];
if (!file) {
    console.error('usage: node gltf_validate.js FILE');
    process.exit(2);
}
validator.validateBytes(new Uint8Array(fs.readFileSync(file)), {
    uri: file,
    maxIssues: 0,           // report every issue, not the first 100
    writeTimestamp: false,  // keep reports comparable between runs
}).then((report) => {
    console.log(JSON.stringify(report));
}, (error) => {
    // Rejection means the bytes were not recognised as glTF/GLB at all.
    console.error(String(error));
    process.exit(1);
});
