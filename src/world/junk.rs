//! Web junk: the alt-text a crawl finds that says nothing about the image — camera file
//! names, SEO spam, dates, camera models, boilerplate and unrelated sentences.
//!
//! The word lists avoid the world's vocabulary (shapes, colors, "background"), so junk never
//! claims anything about a scene by accident; a test reads every family back to check.

use super::rng::Rng;

const MONTHS: &[&str] = &[
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

const CAMERAS: &[&str] = &[
    "Canon EOS 5D Mark III",
    "Canon EOS 80D",
    "NIKON D750",
    "NIKON D3200",
    "SONY DSC-RX100M3",
    "SONY ILCE-7M3",
    "iPhone 12 Pro",
    "iPhone 8 Plus",
    "Samsung SM-G991B",
    "FUJIFILM X-T3",
    "Panasonic DMC-FZ200",
    "OLYMPUS E-M10",
    "Pixel 6a",
    "GoPro HERO9",
];

const PRODUCTS: &[&str] = &[
    "wedding dresses",
    "garden furniture",
    "car insurance",
    "led lights",
    "phone cases",
    "kitchen cabinets",
    "running shoes",
    "dog beds",
    "office chairs",
    "hair extensions",
    "solar panels",
    "bathroom tiles",
    "laptop bags",
    "fishing gear",
    "baby strollers",
];

const SENTENCES: &[&str] = &[
    "Thank you for visiting our website.",
    "Click here to download the full size image.",
    "Our team will contact you within 24 hours.",
    "The meeting has been moved to Thursday afternoon.",
    "Please enable JavaScript to view the comments.",
    "Add to cart",
    "Read more",
    "Image not available",
    "Loading...",
    "No description available.",
    "Sign up for our newsletter and get 10% off your first order!",
    "We had such a great time at the lake this summer.",
    "Happy birthday to my amazing sister!",
    "Throwback to last year's trip.",
    "This product has been discontinued.",
    "Scroll down for more photos",
    "Image courtesy of the author",
    "All rights reserved.",
    "untitled",
    "thumbnail",
    "logo",
    "banner",
    "placeholder",
    "spacer.gif",
    "default image",
];

const SITES: &[&str] = &[
    "shopdeals",
    "mybloghub",
    "newsdaily",
    "bestreviews",
    "cheapfinds",
    "travelnotes",
    "homeideas",
    "techzone",
];

fn number(rng: &mut Rng, lo: u32, hi: u32) -> u32 {
    lo + rng.below((hi - lo + 1) as usize) as u32
}

fn date(rng: &mut Rng) -> String {
    let year = number(rng, 2008, 2024);
    let month = number(rng, 1, 12);
    let day = number(rng, 1, 28);
    match rng.below(5) {
        0 => format!("{year}-{month:02}-{day:02}"),
        1 => format!("{} {day}, {year}", MONTHS[(month - 1) as usize]),
        2 => format!("{day:02}/{month:02}/{year}"),
        3 => format!("Posted on {day}/{month}/{year} by admin"),
        _ => format!("Updated: {} {year}", &MONTHS[(month - 1) as usize][..3]),
    }
}

fn file_name(rng: &mut Rng) -> String {
    let (y, mo, d) = (
        number(rng, 2010, 2024),
        number(rng, 1, 12),
        number(rng, 1, 28),
    );
    let (h, mi, s) = (number(rng, 0, 23), number(rng, 0, 59), number(rng, 0, 59));
    match rng.below(10) {
        0 => format!("IMG_{:04}.JPG", number(rng, 1, 9999)),
        1 => format!("DSC_{:04}.JPG", number(rng, 1, 9999)),
        2 => format!("DSCN{:04}.jpg", number(rng, 1, 9999)),
        3 => format!("P10{:05}.JPG", number(rng, 1, 99999)),
        4 => format!("{y}{mo:02}{d:02}_{h:02}{mi:02}{s:02}.jpg"),
        5 => format!(
            "PXL_{y}{mo:02}{d:02}_{h:02}{mi:02}{s:02}{:03}.jpg",
            number(rng, 0, 999)
        ),
        6 => format!("Screenshot {y}-{mo:02}-{d:02} at {h}.{mi:02}.{s:02}.png"),
        7 => format!("WhatsApp Image {y}-{mo:02}-{d:02} at {h}.{mi:02}.{s:02}.jpeg"),
        8 => format!("image ({})", number(rng, 1, 40)),
        _ => format!(
            "https://www.{}.com/wp-content/uploads/{y}/{mo:02}/img{}-300x225.jpg",
            rng.pick(SITES),
            number(rng, 100, 9999)
        ),
    }
}

fn seo(rng: &mut Rng) -> String {
    let product = rng.pick(PRODUCTS);
    let year = number(rng, 2015, 2024);
    match rng.below(6) {
        0 => format!("Best {product} {year} - Cheap {product} for Sale | Free Shipping"),
        1 => format!("{product} wholesale price buy online"),
        2 => format!("Top {} {product} ideas you need to see", number(rng, 5, 50)),
        3 => format!("{product}, cheap {product}, {product} sale, buy {product}, {product} online"),
        4 => format!(
            "{}% OFF {product} - Limited Time Offer!",
            number(rng, 10, 70)
        ),
        _ => format!(
            "{product} near me | {} reviews",
            rng.pick(&["top rated", "verified", "honest", "customer"])
        ),
    }
}

fn camera(rng: &mut Rng) -> String {
    let model = rng.pick(CAMERAS);
    match rng.below(3) {
        0 => model.to_string(),
        1 => format!(
            "{model} f/{}.{} 1/{}s ISO {}",
            number(rng, 1, 8),
            number(rng, 0, 9),
            rng.pick(&[60, 125, 250, 500, 1000]),
            rng.pick(&[100, 200, 400, 800, 1600])
        ),
        _ => format!("Shot on {model}"),
    }
}

/// One piece of web junk.
pub fn junk(rng: &mut Rng) -> String {
    let piece = |rng: &mut Rng| match rng.below(5) {
        0 => file_name(rng),
        1 => seo(rng),
        2 => date(rng),
        3 => camera(rng),
        _ => rng.pick(SENTENCES).to_string(),
    };
    let first = piece(rng);
    if rng.chance(0.25) {
        let second = piece(rng);
        let sep = rng.pick(&[" - ", " | ", " ", ", "]);
        format!("{first}{sep}{second}")
    } else {
        first
    }
}

#[cfg(test)]
mod tests {
    use super::super::claims::{Claims, parse};
    use super::*;

    #[test]
    fn junk_is_varied_and_claims_nothing() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..5000 {
            let text = junk(&mut Rng::stream(9, &[i]));
            assert!(!text.trim().is_empty());
            assert_eq!(parse(&text), Claims::default(), "{text:?}");
            seen.insert(text);
        }
        assert!(seen.len() > 3000, "only {} distinct", seen.len());
    }
}
