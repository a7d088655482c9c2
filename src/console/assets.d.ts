// The console's browser files, imported as text (`with { type: "text" }`) so `bun build --compile` carries
// them inside the binary; TypeScript never checks them as modules of ours (they run in the browser).
declare module "*.css" {
  const text: string;
  export default text;
}
declare module "*/console/app.js" {
  const text: string;
  export default text;
}
declare module "*/console/show.js" {
  const text: string;
  export default text;
}
declare module "*/console/chart.js" {
  const text: string;
  export default text;
}
