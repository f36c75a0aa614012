"use strict";

// An HTTP API handler (payload format 2.0).
exports.hello = async (event) => {
  const name = (event.pathParameters && event.pathParameters.name) || "world";
  return {
    statusCode: 200,
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ message: `Hello, ${name}!` }),
  };
};
