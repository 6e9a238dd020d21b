// Runs the module's polkit rule as polkitd would, on the cases given as JSON on stdin:
// [{"user", "action", "unit", "verb"}], and prints what the rule answers for each.
"use strict";
const fs = require("fs");
const input = JSON.parse(fs.readFileSync(0, "utf8"));
const rules = [];
const polkit = {
  Result: { YES: "yes", NO: "no", AUTH_ADMIN: "auth_admin", NOT_HANDLED: "not_handled" },
  addRule: (rule) => rules.push(rule),
  log: () => {},
};
new Function("polkit", input.rule)(polkit);
const answers = input.cases.map((c) => {
  const details = { unit: c.unit, verb: c.verb };
  const action = { id: c.action, lookup: (key) => details[key] };
  for (const rule of rules) {
    const result = rule(action, { user: c.user });
    if (result !== undefined && result !== polkit.Result.NOT_HANDLED) return result;
  }
  return "not_handled";
});
process.stdout.write(JSON.stringify(answers));
