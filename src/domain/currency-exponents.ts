/**
 * The minor unit of every active ISO 4217 currency: how many decimal places its amounts have, so
 * `"1.5"` IQD is 1500 minor units and `"1.5"` JPY is not an amount at all.
 *
 * A fixed table rather than `Intl.NumberFormat`: Intl answers from CLDR, which gives the digits people
 * are shown, not the minor unit payments are settled in (on Node 20 COP, IDR, HUF, PKR … get 0 and
 * IQD 0 instead of 3), accepts any three letters (`ZZZ` gets 2), and changes with the Node ICU build.
 * A table in the repository changes only when someone updates it from the list.
 *
 * Source: ISO 4217 list one (current codes) as in force from January 2026, after Bulgaria moved to the
 * euro. Left out on purpose:
 * - codes whose minor unit is "N.A." — precious metals (XAU XAG XPT XPD), units of account and funds
 *   (XDR XBA XBB XBC XBD XSU XUA) and the test and no-currency codes (XTS XXX): none is an amount of money;
 * - withdrawn codes, refused like unknown ones: BGN (2026-01), ANG (2025-03, now XCG), ZWL (2024-09,
 *   now ZWG), SLL (2023-12, now SLE), HRK (2023-01), CUC (2021-06), and older ones.
 * Funds codes that do have a minor unit (BOV CHE CHW CLF COU MXV USN UYI UYW) are in, as is XAD.
 */

/** Decimal places of a currency's minor unit; ISO 4217 uses no other values. */
export type MinorUnitExponent = 0 | 2 | 3 | 4;

/**
 * The active codes grouped by exponent, as text so that the table reads like the list. Every code is
 * listed: nothing defaults to 2, so a code missing here is refused rather than guessed.
 */
const CODES_BY_EXPONENT: Readonly<Record<MinorUnitExponent, string>> = {
  0: 'BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF',
  2: `
    AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BMD BND BOB BOV BRL BSD BTN BWP
    BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB
    EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES
    KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR
    MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD
    RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP
    TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XAD XCD XCG YER ZAR ZMW ZWG
  `,
  3: 'BHD IQD JOD KWD LYD OMR TND',
  4: 'CLF UYW',
};

/** Alphabetic code (upper case, as ISO 4217 writes it) → exponent of its minor unit. */
export const ISO_4217_MINOR_UNITS: ReadonlyMap<string, MinorUnitExponent> = new Map(
  ([0, 2, 3, 4] as const).flatMap((exponent) =>
    CODES_BY_EXPONENT[exponent]
      .trim()
      .split(/\s+/)
      .map((code) => [code, exponent] as const),
  ),
);

/**
 * Decimal places of the minor unit of an active ISO 4217 currency (`EUR` 2, `JPY` 0, `KWD` 3,
 * `CLF` 4), or null for anything else: unknown, withdrawn, without a minor unit (`XAU`), or not
 * upper case. A Map, not an object, so `constructor` and the like are unknown codes too.
 */
export function minorUnitExponentOf(code: string): MinorUnitExponent | null {
  return ISO_4217_MINOR_UNITS.get(code) ?? null;
}
