"""Writes the fuzz corpus's seed images (tests/fuzz_corpus/image/): tiny PNG
and JPEG files covering the decoders' paths (colour types, bit depths,
palette with transparency, Adam7 interlacing; baseline, progressive, grey,
CMYK, subsampled and restart-interval JPEG). Needs Pillow; run from this
folder: `python make_image_seeds.py`."""

from PIL import Image


def gradient(w, h, mode="RGB"):
    im = Image.new("RGB", (w, h))
    im.putdata([((x * 40) % 256, (y * 60) % 256, ((x + y) * 25) % 256)
                for y in range(h) for x in range(w)])
    return im.convert(mode)


def main():
    out = "image/"
    gradient(7, 5).save(out + "rgb.png")
    gradient(6, 4, "RGBA").save(out + "rgba.png")
    gradient(5, 3, "L").save(out + "grey.png")
    gradient(5, 5, "LA").save(out + "grey_alpha.png")
    gradient(8, 3, "1").save(out + "bilevel.png")
    gradient(4, 4, "I;16").save(out + "grey16.png")
    pal = gradient(8, 6).quantize(4)
    pal.info["transparency"] = 0
    pal.save(out + "palette_trns.png", transparency=0)
    gradient(9, 7).save(out + "interlaced.png", interlace=1)
    gradient(9, 7).save(out + "baseline.jpg", quality=80)
    gradient(17, 9).save(out + "progressive.jpg", quality=70, progressive=True)
    gradient(8, 8, "L").save(out + "grey.jpg", quality=90)
    gradient(16, 16).save(out + "subsampled_420.jpg", quality=75, subsampling=2)
    gradient(6, 6, "CMYK").save(out + "cmyk.jpg", quality=85)
    gradient(5, 4).save(out + "optimized.jpg", quality=60, optimize=True)


if __name__ == "__main__":
    main()
