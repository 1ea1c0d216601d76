// node validate.mjs <openapi.json>: exits 0 when the document is a valid
// OpenAPI 3 document (schema + $ref resolution), prints the reason otherwise.
import SwaggerParser from "@apidevtools/swagger-parser";

const file = process.argv[2];
try {
  const api = await SwaggerParser.validate(file);
  const ops = Object.values(api.paths).reduce((n, p) => n + Object.keys(p).length, 0);
  console.log(`valid OpenAPI ${api.openapi}: ${Object.keys(api.paths).length} paths, ${ops} operations`);
} catch (e) {
  console.error(`invalid: ${e.message}`);
  process.exit(1);
}
