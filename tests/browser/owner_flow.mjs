// The owner's flow in Home Assistant's real frontend, in headless Chromium, with a screenshot per step.
//
//   HA_URL HA_USER HA_PASSWORD APPLIANCE_NAME APPLIANCE_PIN SHOTS_DIR node owner_flow.mjs
//
// Log in; add "EST Appliance Pairing" from Settings -> Devices & services; find the simulated
// appliance under "Discovered"; open it, type its PIN (a wrong one first: the dialog waits for the
// appliance's next PIN exchange, which cannot prove it, and asks again), then the right one, which
// the appliance proves; see the appliance as a device with its certificate expiry; revoke it from
// the device page; see the hub's enrollment QR code drawn. Exits non-zero, with a screenshot of the failing page, when any step fails.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
};
const url = env("HA_URL", "http://127.0.0.1:8123");
const user = env("HA_USER", "owner");
const password = env("HA_PASSWORD");
const applianceName = env("APPLIANCE_NAME", "Kitchen oven");
const pin = env("APPLIANCE_PIN");
const shots = env("SHOTS_DIR");
const patience = Number(env("STEP_TIMEOUT_MS", "120000"));
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: env("CHROMIUM", "/usr/bin/chromium"),
  // The flags keep Chromium from reaching for the internet (this machine has none).
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 860 }, deviceScaleFactor: 1 });
page.setDefaultTimeout(patience);
let number = 0;

// The screenshot of the current step (or of a moment within it).
const shotFile = (name) => join(shots, `${String(number).padStart(2, "0")}-${name}.png`);

async function step(name, action) {
  number += 1;
  const file = shotFile(name);
  try {
    await action();
    await page.waitForTimeout(800); // let animations settle before the picture
    await page.screenshot({ path: file });
    console.log(`ok ${number} ${name}`);
  } catch (error) {
    await page.screenshot({ path: join(shots, `failed-${name}.png`) }).catch(() => {});
    console.error(`FAILED step ${number} (${name}): ${error.message.split("\n")[0]}`);
    await browser.close();
    process.exit(1);
  }
}

// The certificate-status row of the device page showing this state (state text is slotted into the row).
const statusRow = (state) =>
  page.locator("hui-generic-entity-row").filter({ hasText: "Certificate status" }).filter({ hasText: state });

// The integrations page's "Add integration" button (an ha-fab up to 2026.10).
const addIntegration = () =>
  page.getByRole("button", { name: "Add integration" }).or(page.locator("ha-fab")).first();

// The PIN field: labelled up to 2026.10; from 2026.11 on the label is not tied to the input.
const pinField = () => page.getByLabel("PIN").or(page.locator('input[type="password"]')).first();

// The enrollment QR code (an image entity) as the frontend draws it, once the picture has loaded.
const qrCode = () => page.locator('img[src*="/api/image_proxy/image."]').filter({ visible: true }).first();

async function pictureLoaded(locator) {
  const deadline = Date.now() + patience;
  while (!(await locator.evaluate((img) => img.complete && img.naturalWidth > 0))) {
    if (Date.now() > deadline) throw new Error("the QR code picture never loaded");
    await page.waitForTimeout(250);
  }
}

async function openIntegrations() {
  await page.goto(`${url}/config/integrations/dashboard`);
  await addIntegration().waitFor();
}

await step("login", async () => {
  await page.goto(url);
  await page.getByLabel("Username").fill(user);
  await page.getByLabel("Password", { exact: true }).fill(password);
  await page.screenshot({ path: join(shots, "00-login-form.png") });
  await page.getByRole("button", { name: "Log in" }).click();
  // The dashboard the owner lands on: /lovelace/0 up to 2026.10, /home from 2026.11 on.
  await page.waitForURL((landed) => !landed.pathname.startsWith("/auth/"));
});

await step("add-integration", async () => {
  await openIntegrations();
  await addIntegration().click();
  await page.getByText("Select brand").waitFor();
  // A labelled field up to 2026.10, a placeholder from 2026.11 on.
  await page
    .getByLabel("Search for a brand name")
    .or(page.getByPlaceholder("Search for a brand name"))
    .first()
    .fill("EST Appliance");
  await page.getByText("EST Appliance Pairing", { exact: true }).click();
  await page.getByText("Household certificate authority").waitFor();
});

await step("hub-created", async () => {
  await page.getByRole("button", { name: "Submit" }).click();
  // "Created configuration for ..." up to 2026.10; from 2026.11 on, a "Name and assign" step.
  await page.getByText("Created configuration for").or(page.getByText("Name and assign")).first().waitFor();
});

await step("discovered", async () => {
  await page.getByRole("button", { name: "Finish" }).click(); // "Skip and finish" from 2026.11 on
  // The appliance finds the new EST server over mDNS and asks to enroll; its card appears.
  const card = page.getByText(applianceName, { exact: true });
  const deadline = Date.now() + patience;
  for (;;) {
    await openIntegrations();
    if (await card.isVisible()) break;
    if (Date.now() > deadline) throw new Error(`${applianceName} never appeared under Discovered`);
    await page.waitForTimeout(3000);
  }
});

await step("confirm", async () => {
  await page.getByRole("button", { name: "Add", exact: true }).click();
  await page.getByText("Pair this appliance?").waitFor();
  // It asks through the PIN exchange: its PIN is typed, never compared with one it sent.
  await page.getByText("Comparing fingerprints cannot complete this exchange").waitFor();
});

await step("wrong-pin", async () => {
  await page.getByText("Type the PIN printed on the appliance", { exact: true }).click();
  await pinField().fill("000000");
  await page.getByRole("button", { name: "Submit" }).click();
  // The dialog waits for the appliance's next exchange (it asks every few seconds): a picture of
  // the wait, taken at once, before that exchange ends it.
  await page.getByText("Waiting for its next request to prove").waitFor();
  await page.waitForTimeout(300);
  await page.screenshot({ path: shotFile("waiting-for-proof") });
  await page.getByText("The appliance could not prove this PIN").waitFor();
});

await step("approved", async () => {
  await pinField().fill(pin);
  await page.getByRole("button", { name: "Submit" }).click();
  await page.getByText("proved that it knows the PIN").waitFor();
});

await step("hub-and-appliance", async () => {
  await page.getByRole("button", { name: "Close" }).last().click();
  await page.goto(`${url}/config/integrations/integration/est_pairing`);
  // From 2026.11 on the page names both the appliance's subentry and its device.
  await page.getByText(applianceName, { exact: true }).first().waitFor();
});

await step("device", async () => {
  await page.goto(`${url}/config/devices/dashboard`);
  await page.getByText(applianceName, { exact: true }).first().click();
  await page.getByText("Certificate expiry").filter({ visible: true }).first().waitFor();
  // The appliance retries every few seconds; its certificate makes the status "Valid".
  await statusRow("Valid").waitFor();
});

await step("revoked", async () => {
  await page.getByRole("button", { name: "Press" }).click();
  await statusRow("Revoked").waitFor();
});

await step("hub-qr-code", async () => {
  await page.goto(`${url}/config/devices/dashboard`);
  await page.getByText("Household CA").first().click();
  const entity = page.getByText("Enrollment QR code", { exact: true }).filter({ visible: true }).first();
  await entity.waitFor();
  if (!(await qrCode().isVisible())) await entity.click(); // its more-info dialog shows the picture
  await qrCode().waitFor();
  await pictureLoaded(qrCode());
});

await browser.close();
console.log(`owner flow passed: ${number} steps, screenshots in ${shots}`);
