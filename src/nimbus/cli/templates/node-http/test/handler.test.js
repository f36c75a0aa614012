"use strict";

const test = require("node:test");
const assert = require("node:assert");
const { hello } = require("../handler");

test("hello uses the path parameter", async () => {
  const response = await hello({ version: "2.0", pathParameters: { name: "Ada" } });
  assert.strictEqual(response.statusCode, 200);
  assert.deepStrictEqual(JSON.parse(response.body), { message: "Hello, Ada!" });
});
