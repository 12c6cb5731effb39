/**
 * Dependency rules (`npm run lint` runs `depcruise packages`):
 *  - no import cycle in either package;
 *  - the gateway reaches the local fine-tuning service only through its package's entries, by package name:
 *    `@finetune-graphql/emulator` (src/index.ts) anywhere, `@finetune-graphql/emulator/testing` (test/kit) in tests;
 *  - the local fine-tuning service never imports the gateway.
 */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'An import cycle: move what both sides need to the module that owns it.',
      from: { path: '^packages/' },
      to: { circular: true },
    },
    {
      name: 'gateway-to-emulator-entry-only',
      severity: 'error',
      comment: "The gateway imports the local service's package entry only (@finetune-graphql/emulator), never its files.",
      from: { path: '^packages/gateway/' },
      to: { path: '^packages/emulator/', pathNot: ['^packages/emulator/src/index[.]ts$', '^packages/emulator/test/kit/index[.]ts$'] },
    },
    {
      name: 'emulator-testing-in-tests-only',
      severity: 'error',
      comment: "@finetune-graphql/emulator/testing is a test kit: the gateway's src/ uses the package's main entry.",
      from: { path: '^packages/gateway/src/' },
      to: { path: '^packages/emulator/test/' },
    },
    {
      name: 'gateway-to-emulator-by-package-name',
      severity: 'error',
      comment: 'By package name (@finetune-graphql/emulator), not by a relative path into packages/emulator.',
      from: { path: '^packages/gateway/' },
      to: { path: '^packages/emulator/', dependencyTypes: ['local'] },
    },
    {
      name: 'emulator-not-to-gateway',
      severity: 'error',
      comment: 'The local fine-tuning service stands alone.',
      from: { path: '^packages/emulator/' },
      to: { path: '^packages/gateway/' },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      comment: 'An import that resolves to nothing.',
      from: { path: '^packages/' },
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)node_modules/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.base.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      mainFields: ['module', 'main', 'types', 'typings'],
      extensions: ['.ts', '.js', '.mjs', '.cjs', '.json'],
    },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
