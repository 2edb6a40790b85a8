"""Kotlin templates of the app code (``toolkit.chain.appcode``): the class skeleton, ``fit``, the TFLite component
runner, one function per glue op (``OPS``), and the helpers some of them share (``HELPERS``).

Every function mirrors the host's definition operation by operation: the glue ops ``toolkit.glue``'s NumPy forms
(float64 where NumPy computes in float64), ``fit`` ``toolkit.data.photo.fit`` down to OpenCV's uint8 resize
arithmetic. Placeholders are ``@@NAME@@`` (Kotlin itself uses ``$`` and braces).
"""

from __future__ import annotations

CLASS = '''\
@@HEADER@@
// Put it in your app's package (add a package line). Needs the LiteRT / TensorFlow Lite Interpreter
// (org.tensorflow.lite: Interpreter, signature runners) and the bundle's files in the app's assets.

import android.content.Context
import android.graphics.Bitmap
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel
import kotlin.math.abs
import kotlin.math.ceil
import kotlin.math.exp
import kotlin.math.floor
import kotlin.math.max
import kotlin.math.min
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter

/**
 * The @@BUNDLE@@ chain on Android: each component's TFLite artifact (@@KEY@@) and the glue between them.
 * The bundle's files are read from the app's assets under [assetDir]; keep them uncompressed in the APK
 * (androidResources { noCompress += "tflite" }) so that they can be memory-mapped.
 * Not thread-safe: use one instance per thread. Close it to free the interpreters.
 */
class @@CLASS@@(context: Context, private val assetDir: String = "@@BUNDLE@@", threads: Int = 2) : AutoCloseable {
    /** A component output as the chain holds it: channels x height x width (a vector: channels x 1 x 1). */
    data class Out(val name: String, val channels: Int, val height: Int, val width: Int)

    private val interpreters: Map<String, Interpreter> = Interpreter.Options().setNumThreads(threads).let { options ->
        mapOf(
@@MODELS@@
        )
    }

    override fun close() = interpreters.values.forEach { it.close() }

@@RUN@@

@@FIT@@

@@COMPONENT@@

@@OPS@@
@@HELPERS@@
    private companion object {
        const val INPUT_HEIGHT = @@HEIGHT@@
        const val INPUT_WIDTH = @@WIDTH@@
        const val CENTER_CROP = @@CENTER_CROP@@  // manifest input.fit: @@FIT_MODE@@
        const val DBL_EPSILON = 2.220446049250313e-16

        fun mapAsset(context: Context, path: String): MappedByteBuffer =
            context.assets.openFd(path).use { fd ->
                FileInputStream(fd.fileDescriptor).use { stream ->
                    stream.channel.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
                }
            }
    }
}
'''

MODEL = '            "@@NAME@@" to Interpreter(mapAsset(context, "$assetDir/@@PATH@@"), options),'

RUN = '''\
    /**
     * The chain on one photo: [fit], then the manifest's steps in order. Returns the chain's outputs by name:
@@OUTPUT_DOCS@@
     */
    fun run(bitmap: Bitmap): Map<String, FloatArray> {
        val v = HashMap<String, FloatArray>()
        v["image"] = fit(bitmap)
@@STEPS@@
        return linkedMapOf(
@@RETURNS@@
        )
    }'''

COMPONENT_STEP = ('for ((name, x) in runComponent("@@NAME@@", @@PICTURE@@, @@HEIGHT@@, @@WIDTH@@, listOf(@@OUTS@@))) '
                  'v["@@ID@@.$name"] = x')

FIT = '''\
    /**
     * The chain's picture from a photo, as toolkit.data.photo.fit makes it: INPUT_HEIGHT x INPUT_WIDTH x 3
     * RGB floats 0-255, channel-last.
     * - center_crop: the largest centred crop of the picture's aspect ratio. If W * h >= H * w (the photo is
     *   wider): ch = H, cw = H * w / h; else cw = W, ch = W * h / w (integer division), each at least 1;
     *   x0 = (W - cw) / 2, y0 = (H - ch) / 2. stretch: the whole photo.
     * - the crop resized to h x w as cv2.resize does on uint8: INTER_AREA when shrinking (w <= cw and h <= ch),
     *   else INTER_LINEAR; a crop already h x w is taken as is.
     * The bitmap must be upright (apply the photo's EXIF orientation first, as load_photo does). Its pixels are
     * taken as stored, with no colour conversion (load_photo ignores colour profiles too); a transparent pixel
     * is composited over white (load_photo does; Pillow's rounding may differ by 1 there).
     */
    fun fit(bitmap: Bitmap): FloatArray {
        val bmp = if (bitmap.config == Bitmap.Config.ARGB_8888) bitmap
                  else bitmap.copy(Bitmap.Config.ARGB_8888, false) ?: error("cannot copy the bitmap to ARGB_8888")
        val photoW = bmp.width
        val photoH = bmp.height
        val h = INPUT_HEIGHT
        val w = INPUT_WIDTH
        var cw = photoW
        var ch = photoH
        var x0 = 0
        var y0 = 0
        if (CENTER_CROP) {
            if (photoW.toLong() * h >= photoH.toLong() * w) {
                cw = (photoH.toLong() * w / h).toInt()
                ch = photoH
            } else {
                cw = photoW
                ch = (photoW.toLong() * h / w).toInt()
            }
            cw = max(cw, 1)
            ch = max(ch, 1)
            x0 = (photoW - cw) / 2
            y0 = (photoH - ch) / 2
        }
        // ARGB_8888 is stored as R, G, B, A bytes (premultiplied unless isPremultiplied is false).
        val pixels = ByteBuffer.allocate(bmp.rowBytes * photoH)
        bmp.copyPixelsToBuffer(pixels)
        val crop = IntArray(ch * cw * 3)
        for (y in 0 until ch) {
            for (x in 0 until cw) {
                val p = (y0 + y) * bmp.rowBytes + (x0 + x) * 4
                val alpha = pixels.get(p + 3).toInt() and 0xFF
                for (c in 0 until 3) {
                    val value = pixels.get(p + c).toInt() and 0xFF
                    crop[(y * cw + x) * 3 + c] = when {
                        alpha == 255 -> value
                        bmp.isPremultiplied -> min(255, value + 255 - alpha)
                        else -> (value * alpha + 255 * (255 - alpha) + 127) / 255
                    }
                }
            }
        }
        val fitted = when {
            cw == w && ch == h -> crop
            w <= cw && h <= ch -> resizeAreaU8(crop, ch, cw, h, w)
            else -> resizeLinearU8(crop, ch, cw, h, w)
        }
        return FloatArray(fitted.size) { fitted[it].toFloat() }
    }

    /** cv2.resize(INTER_AREA) of an RGB uint8 picture, shrinking: OpenCV's resizeAreaFast_ / resizeArea_. */
    private fun resizeAreaU8(src: IntArray, inH: Int, inW: Int, outH: Int, outW: Int): IntArray {
        val scaleX = 1.0 / (outW.toDouble() / inW)
        val scaleY = 1.0 / (outH.toDouble() / inH)
        val ix = Math.rint(scaleX).toInt()
        val iy = Math.rint(scaleY).toInt()
        val out = IntArray(outH * outW * 3)
        if (abs(scaleX - ix) < DBL_EPSILON && abs(scaleY - iy) < DBL_EPSILON) {  // whole ix x iy blocks
            val scale = 1f / (ix * iy)
            for (dy in 0 until outH) {
                for (dx in 0 until outW) {
                    for (c in 0 until 3) {
                        var sum = 0
                        for (y in dy * iy until (dy + 1) * iy) {
                            for (x in dx * ix until (dx + 1) * ix) sum += src[(y * inW + x) * 3 + c]
                        }
                        out[(dy * outW + dx) * 3 + c] = if (ix == 2 && iy == 2) (sum + 2) shr 2 else roundU8(sum * scale)
                    }
                }
            }
            return out
        }
        val xs = areaTable(inW, outW, scaleX)
        val ys = areaTable(inH, outH, scaleY)
        val row = FloatArray(outW * 3)
        val acc = FloatArray(outW * 3)
        var prev = ys.dst[0]
        for (j in ys.dst.indices) {
            val dy = ys.dst[j]
            val beta = ys.alpha[j]
            row.fill(0f)
            for (k in xs.dst.indices) {
                val d = xs.dst[k] * 3
                val s = (ys.src[j] * inW + xs.src[k]) * 3
                for (c in 0 until 3) row[d + c] = row[d + c] + src[s + c] * xs.alpha[k]
            }
            if (dy != prev) {
                for (i in acc.indices) {
                    out[prev * outW * 3 + i] = roundU8(acc[i])
                    acc[i] = beta * row[i]
                }
                prev = dy
            } else {
                for (i in acc.indices) acc[i] = acc[i] + beta * row[i]
            }
        }
        for (i in acc.indices) out[prev * outW * 3 + i] = roundU8(acc[i])
        return out
    }

    private class AreaTable(val dst: IntArray, val src: IntArray, val alpha: FloatArray)

    /** OpenCV's computeResizeAreaTab: which source pixels make each output pixel, and their weights. */
    private fun areaTable(inSize: Int, outSize: Int, scale: Double): AreaTable {
        val dst = ArrayList<Int>()
        val src = ArrayList<Int>()
        val alpha = ArrayList<Float>()
        for (d in 0 until outSize) {
            val f1 = d * scale
            val f2 = f1 + scale
            val cell = min(scale, inSize - f1)
            val s2 = min(floor(f2).toInt(), inSize - 1)
            val s1 = min(ceil(f1).toInt(), s2)
            if (s1 - f1 > 1e-3) {
                dst.add(d); src.add(s1 - 1); alpha.add(((s1 - f1) / cell).toFloat())
            }
            for (s in s1 until s2) {
                dst.add(d); src.add(s); alpha.add((1.0 / cell).toFloat())
            }
            if (f2 - s2 > 1e-3) {
                dst.add(d); src.add(s2); alpha.add((min(min(f2 - s2, 1.0), cell) / cell).toFloat())
            }
        }
        return AreaTable(dst.toIntArray(), src.toIntArray(), alpha.toFloatArray())
    }

    /** cv2.resize(INTER_LINEAR) of an RGB uint8 picture: 11-bit fixed-point weights, rows combined as OpenCV does. */
    private fun resizeLinearU8(src: IntArray, inH: Int, inW: Int, outH: Int, outW: Int): IntArray {
        val scaleX = 1.0 / (outW.toDouble() / inW)
        val scaleY = 1.0 / (outH.toDouble() / inH)
        val sx = IntArray(outW)
        val a0 = IntArray(outW)
        val a1 = IntArray(outW)
        for (dx in 0 until outW) {
            var f = ((dx + 0.5) * scaleX - 0.5).toFloat()
            var s = floor(f).toInt()
            f -= s.toFloat()
            if (s < 0) { f = 0f; s = 0 }
            if (s >= inW - 1) { f = 0f; s = inW - 1 }
            sx[dx] = s
            a0[dx] = fixedPoint(1f - f)
            a1[dx] = fixedPoint(f)
        }
        fun row(y: Int): IntArray {
            val r = IntArray(outW * 3)
            for (dx in 0 until outW) {
                val s = sx[dx]
                for (c in 0 until 3) {
                    val p = src[(y * inW + s) * 3 + c]
                    r[dx * 3 + c] = if (s == inW - 1) p * 2048 else p * a0[dx] + src[(y * inW + s + 1) * 3 + c] * a1[dx]
                }
            }
            return r
        }
        val out = IntArray(outH * outW * 3)
        for (dy in 0 until outH) {
            var f = ((dy + 0.5) * scaleY - 0.5).toFloat()
            val s = floor(f).toInt()
            f -= s.toFloat()
            val b0 = fixedPoint(1f - f)
            val b1 = fixedPoint(f)
            val r0 = row(min(max(s, 0), inH - 1))
            val r1 = row(min(max(s + 1, 0), inH - 1))
            for (i in 0 until outW * 3) {
                val value = (((b0 * (r0[i] shr 4)) shr 16) + ((b1 * (r1[i] shr 4)) shr 16) + 2) shr 2
                out[dy * outW * 3 + i] = min(max(value, 0), 255)
            }
        }
        return out
    }

    private fun fixedPoint(f: Float): Int = Math.rint((f * 2048f).toDouble()).toInt()

    private fun roundU8(f: Float): Int = min(max(Math.rint(f.toDouble()).toInt(), 0), 255)'''

COMPONENT = '''\
    /**
     * One component on a picture (height x width x 3, RGB 0-255, channel-last): the picture goes in as its input
     * tensor takes it (float32 as is; int8 quantized with the tensor's own scale and zero point,
     * q = round(x / scale + zero) clamped to [-128, 127], ties to even: pixel - 128 for skinkit's int8 artifacts);
     * each output comes back by name, dequantized if it is int8, and turned from TFLite's channel-last
     * (1 x H x W x C) to the glue's channel-first (C x H x W).
     */
    private fun runComponent(name: String, picture: FloatArray, height: Int, width: Int, outs: List<Out>): Map<String, FloatArray> {
        require(picture.size == height * width * 3) { "$name takes a ${height}x${width}x3 picture, got ${picture.size} values" }
        val interpreter = interpreters.getValue(name)
        val key = interpreter.signatureKeys.first()
        val inputTensor = interpreter.getInputTensorFromSignature("image", key)
        val input = when (inputTensor.dataType()) {
            DataType.FLOAT32 -> ByteBuffer.allocateDirect(4 * picture.size).order(ByteOrder.nativeOrder()).apply {
                for (p in picture) putFloat(p)
            }
            DataType.INT8 -> ByteBuffer.allocateDirect(picture.size).order(ByteOrder.nativeOrder()).apply {
                val q = inputTensor.quantizationParams()
                for (p in picture) put(Math.rint((p / q.scale + q.zeroPoint).toDouble()).coerceIn(-128.0, 127.0).toInt().toByte())
            }
            else -> throw IllegalStateException("$name: input type ${inputTensor.dataType()}; skinkit artifacts take float32 or int8")
        }
        input.rewind()
        val buffers = outs.associate { o ->
            val bytes = interpreter.getOutputTensorFromSignature(o.name, key).numBytes()
            o.name to ByteBuffer.allocateDirect(bytes).order(ByteOrder.nativeOrder())
        }
        interpreter.runSignature(mapOf("image" to input), buffers, key)
        return outs.associate { o ->
            val tensor = interpreter.getOutputTensorFromSignature(o.name, key)
            val buffer = buffers.getValue(o.name)
            buffer.rewind()
            val n = tensor.numElements()
            check(n == o.channels * o.height * o.width) { "$name.${o.name}: $n values, the manifest says ${o.channels}x${o.height}x${o.width}" }
            val flat = when (tensor.dataType()) {
                DataType.FLOAT32 -> FloatArray(n) { buffer.getFloat() }
                DataType.INT8 -> {
                    val q = tensor.quantizationParams()
                    FloatArray(n) { (buffer.get().toFloat() - q.zeroPoint) * q.scale }
                }
                else -> throw IllegalStateException("$name.${o.name}: output type ${tensor.dataType()}")
            }
            o.name to channelFirst(flat, o.height, o.width, o.channels)
        }
    }

    /** 1 x H x W x C (TFLite, channel-last) to C x H x W (the glue, channel-first); a vector (H = W = 1) is unchanged. */
    private fun channelFirst(x: FloatArray, height: Int, width: Int, channels: Int): FloatArray {
        val plane = height * width
        return FloatArray(x.size) { i -> x[(i % plane) * channels + i / plane] }
    }'''

OPS: dict[str, str] = {
    "resize": '''\
    /**
     * x: channels x inH x inW (channel-first), inH x inW x channels (channelLast: a picture), or inH x inW (nearest:
     * a mask or label map, channels = 1) -> the same at outH x outW.
     */
    fun resize(x: FloatArray, channels: Int, inH: Int, inW: Int, outH: Int, outW: Int,
               nearest: Boolean, channelLast: Boolean): FloatArray {
        if (!nearest) return bilinear(x, channels, inH, inW, outH, outW, channelLast)
        // source row floor((i + 0.5) * in / out), clamped (toolkit.glue.nearest_indices)
        val rows = IntArray(outH) { min((((it + 0.5) * inH) / outH).toInt(), inH - 1) }
        val cols = IntArray(outW) { min((((it + 0.5) * inW) / outW).toInt(), inW - 1) }
        return FloatArray(outH * outW) { i -> x[rows[i / outW] * inW + cols[i % outW]] }
    }''',
    "softmax": '''\
    /** x: classes x positions (positions = H * W, or 1 for a vector) -> probabilities over the classes, in float64. */
    fun softmax(x: FloatArray, classes: Int, positions: Int): FloatArray {
        val out = FloatArray(x.size)
        val e = DoubleArray(classes)
        for (p in 0 until positions) {
            var m = Double.NEGATIVE_INFINITY
            for (c in 0 until classes) m = max(m, x[c * positions + p].toDouble())
            var sum = 0.0
            for (c in 0 until classes) {
                e[c] = exp(x[c * positions + p].toDouble() - m)
                sum += e[c]
            }
            for (c in 0 until classes) out[c * positions + p] = (e[c] / sum).toFloat()
        }
        return out
    }''',
    "argmax": '''\
    /** x: classes x positions -> per position the class index (as a float), the first on ties. */
    fun argmax(x: FloatArray, classes: Int, positions: Int): FloatArray = FloatArray(positions) { p ->
        var best = 0
        for (c in 1 until classes) if (x[c * positions + p] > x[best * positions + p]) best = c
        best.toFloat()
    }''',
    "class_mask": '''\
    /** labels (class indices) -> 1.0 where the label is classIndex, else 0.0. */
    fun classMask(labels: FloatArray, classIndex: Int): FloatArray =
        FloatArray(labels.size) { if (labels[it] == classIndex.toFloat()) 1f else 0f }''',
    "threshold": '''\
    /** x: a mask or a one-channel map -> 1.0 where x > value (compared in float32), else 0.0. */
    fun threshold(x: FloatArray, value: Float): FloatArray = FloatArray(x.size) { if (x[it] > value) 1f else 0f }''',
    "apply_mask": '''\
    /** image: H x W x 3, mask: H x W -> image * mask + fill * (1 - mask) per channel, in float32. */
    fun applyMask(image: FloatArray, mask: FloatArray, fill: Float): FloatArray {
        require(image.size == mask.size * 3) { "applyMask: the picture and the mask differ in size" }
        return FloatArray(image.size) { i ->
            val m = mask[i / 3]
            image[i] * m + fill * (1f - m)
        }
    }''',
    "crop_to_mask": '''\
    /**
     * image: height x width x 3, mask: height x width -> the crop box (toolkit.glue.crop_box) of the picture
     * resized bilinearly to outH x outW x 3.
     */
    fun cropToMask(image: FloatArray, mask: FloatArray, height: Int, width: Int, outH: Int, outW: Int, margin: Double): FloatArray {
        require(image.size == height * width * 3 && mask.size == height * width) { "cropToMask: sizes differ from ${height}x${width}" }
        var bx0 = width
        var by0 = height
        var bx1 = -1
        var by1 = -1
        for (y in 0 until height) {
            for (x in 0 until width) {
                if (mask[y * width + x] > 0.5f) {
                    bx0 = min(bx0, x); bx1 = max(bx1, x); by0 = min(by0, y); by1 = max(by1, y)
                }
            }
        }
        var x0 = 0
        var y0 = 0
        var x1 = width
        var y1 = height
        if (bx1 >= 0) {  // an empty mask keeps the whole picture
            val mx = margin * (bx1 + 1 - bx0)
            val my = margin * (by1 + 1 - by0)
            x0 = max(0, floor(bx0 - mx).toInt())
            y0 = max(0, floor(by0 - my).toInt())
            x1 = min(width, ceil(bx1 + 1 + mx).toInt())
            y1 = min(height, ceil(by1 + 1 + my).toInt())
        }
        val cw = x1 - x0
        val ch = y1 - y0
        val crop = FloatArray(ch * cw * 3) { i -> image[((y0 + i / (cw * 3)) * width + x0) * 3 + i % (cw * 3)] }
        return bilinear(crop, 3, ch, cw, outH, outW, true)
    }''',
    "coverage": '''\
    /** mask -> [the fraction of its pixels that are 1.0] (its mean, in float64). */
    fun coverage(mask: FloatArray): FloatArray {
        var sum = 0.0
        for (m in mask) sum += m
        return floatArrayOf((sum / mask.size).toFloat())
    }''',
    "region_stats": '''\
    /**
     * labels: H x W class indices, image: H x W x 3, within: H x W weights or null (the whole picture) ->
     * (area, intensity), one entry per class of classes, in float64.
     */
    fun regionStats(labels: FloatArray, image: FloatArray, within: FloatArray?, classes: IntArray): Pair<FloatArray, FloatArray> {
        require(image.size == labels.size * 3 && (within == null || within.size == labels.size)) { "regionStats: sizes differ" }
        var total = 0.0
        for (i in labels.indices) total += within?.get(i)?.toDouble() ?: 1.0
        total = max(total, 1.0)
        val area = FloatArray(classes.size)
        val intensity = FloatArray(classes.size)
        for ((j, k) in classes.withIndex()) {
            var n = 0.0
            var sum = 0.0
            for (i in labels.indices) {
                if (labels[i] != k.toFloat()) continue
                val weight = within?.get(i)?.toDouble() ?: 1.0
                val gray = @@LUMA_R@@ * image[3 * i] + @@LUMA_G@@ * image[3 * i + 1] + @@LUMA_B@@ * image[3 * i + 2]
                n += weight
                sum += gray * weight
            }
            area[j] = (n / total).toFloat()
            intensity[j] = if (n > 0) (sum / max(n, 1.0)).toFloat() else 0f
        }
        return Pair(area, intensity)
    }''',
    "to_image": '''\
    /** x: 3 x H x W (a model's [0, 1] RGB) -> H x W x 3 pixels: x * scale, clipped to 0-255. */
    fun toImage(x: FloatArray, height: Int, width: Int, scale: Float): FloatArray {
        require(x.size == 3 * height * width) { "toImage: a 3 x $height x $width picture has ${3 * height * width} values, not ${x.size}" }
        val plane = height * width
        return FloatArray(x.size) { i -> (x[(i % 3) * plane + i / 3] * scale).coerceIn(0f, 255f) }
    }''',
    "paste_instances": '''\
    /**
     * An instance segmenter's first round(count) detections as a height x width label map: 1 + the class of the
     * highest-scoring detection whose pasted mask is >= threshold at the pixel (the first, on ties), 0 elsewhere.
     * boxes: k x 4 [x1, y1, x2, y2] in 0-1; masks: k x m x m over each box. Pasting (toolkit.glue.paste_masks):
     * pixel row i (centre (i + 0.5) / height) inside [y1, y2) reads mask row u = ((i + 0.5) / height - y1) /
     * (y2 - y1) * m - 0.5, clamped to [0, m - 1], linear between floor(u) and floor(u) + 1 (the last row at
     * the edge); columns the same; 0 outside the box.
     */
    fun pasteInstances(boxes: FloatArray, scores: FloatArray, classes: FloatArray, masks: FloatArray, count: FloatArray,
                       k: Int, m: Int, height: Int, width: Int, threshold: Float): FloatArray {
        require(boxes.size == 4 * k && scores.size == k && classes.size == k && masks.size == k * m * m) { "pasteInstances: sizes differ" }
        val labels = FloatArray(height * width)
        val best = FloatArray(height * width) { Float.NEGATIVE_INFINITY }
        val valid = min(max(Math.round(count[0]), 0), k)
        for (d in 0 until valid) {
            val x1 = boxes[4 * d].toDouble(); val y1 = boxes[4 * d + 1].toDouble()
            val x2 = boxes[4 * d + 2].toDouble(); val y2 = boxes[4 * d + 3].toDouble()
            if (x2 <= x1 || y2 <= y1) continue
            for (i in 0 until height) {
                val cy = (i + 0.5) / height
                if (cy < y1 || cy >= y2) continue
                val u = min(max((cy - y1) / (y2 - y1) * m - 0.5, 0.0), (m - 1).toDouble())
                val r0 = floor(u).toInt(); val r1 = min(r0 + 1, m - 1); val fy = (u - r0).toFloat()
                for (j in 0 until width) {
                    val cx = (j + 0.5) / width
                    if (cx < x1 || cx >= x2) continue
                    val v = min(max((cx - x1) / (x2 - x1) * m - 0.5, 0.0), (m - 1).toDouble())
                    val c0 = floor(v).toInt(); val c1 = min(c0 + 1, m - 1); val fx = (v - c0).toFloat()
                    val base = d * m * m
                    val top = masks[base + r0 * m + c0] * (1 - fx) + masks[base + r0 * m + c1] * fx
                    val bottom = masks[base + r1 * m + c0] * (1 - fx) + masks[base + r1 * m + c1] * fx
                    val p = i * width + j
                    if (top * (1 - fy) + bottom * fy >= threshold && scores[d] > best[p]) {
                        best[p] = scores[d]
                        labels[p] = Math.round(classes[d]) + 1f
                    }
                }
            }
        }
        return labels
    }''',
    "count_regions": '''\
    /**
     * labels: height x width class indices, within: a mask or null -> per class of classes the number of
     * 8-connected regions of that class inside within (> 0.5) with at least minPixels pixels.
     */
    fun countRegions(labels: FloatArray, within: FloatArray?, height: Int, width: Int, classes: IntArray, minPixels: Int): FloatArray {
        require(labels.size == height * width && (within == null || within.size == labels.size)) { "countRegions: sizes differ" }
        val counts = FloatArray(classes.size)
        val seen = BooleanArray(labels.size)
        val stack = IntArray(labels.size)
        for ((j, k) in classes.withIndex()) {
            val on = BooleanArray(labels.size) { labels[it] == k.toFloat() && (within == null || within[it] > 0.5f) }
            seen.fill(false)
            var regions = 0
            for (start in labels.indices) {
                if (!on[start] || seen[start]) continue
                var top = 0
                var size = 0
                stack[top++] = start
                seen[start] = true
                while (top > 0) {
                    val p = stack[--top]
                    size++
                    val y = p / width
                    val x = p % width
                    for (yy in max(y - 1, 0)..min(y + 1, height - 1)) {
                        for (xx in max(x - 1, 0)..min(x + 1, width - 1)) {
                            val q = yy * width + xx
                            if (on[q] && !seen[q]) {
                                seen[q] = true
                                stack[top++] = q
                            }
                        }
                    }
                }
                if (size >= minPixels) regions++
            }
            counts[j] = regions.toFloat()
        }
        return counts
    }''',
}

HELPERS: dict[str, str] = {
    "bilinear": '''\
    /**
     * cv2.resize(INTER_LINEAR) of float32 values, channel by channel: half-pixel centres, no antialiasing; a column
     * left of the first (right of the last) source pixel takes that pixel, rows are clamped to the picture.
     * OpenCV's own arithmetic. The host's OpenCV may run Intel IPP's instead, and at an exact 2x shrink it sums
     * 2 x 2 blocks in another order: equal to float rounding (about 1e-5 relative).
     */
    private fun bilinear(x: FloatArray, channels: Int, inH: Int, inW: Int, outH: Int, outW: Int, channelLast: Boolean): FloatArray {
        if (inH == outH && inW == outW) return x.copyOf()
        val scaleX = 1.0 / (outW.toDouble() / inW)
        val scaleY = 1.0 / (outH.toDouble() / inH)
        val sx = IntArray(outW)
        val ax = FloatArray(outW)
        for (dx in 0 until outW) {
            var f = ((dx + 0.5) * scaleX - 0.5).toFloat()
            var s = floor(f).toInt()
            f -= s.toFloat()
            if (s < 0) { f = 0f; s = 0 }
            if (s >= inW - 1) { f = 0f; s = inW - 1 }
            sx[dx] = s
            ax[dx] = f
        }
        fun at(c: Int, y: Int, xx: Int): Float = if (channelLast) x[(y * inW + xx) * channels + c] else x[(c * inH + y) * inW + xx]
        fun row(c: Int, y: Int, dx: Int): Float {
            val s = sx[dx]
            return if (s == inW - 1) at(c, y, s) else at(c, y, s) * (1f - ax[dx]) + at(c, y, s + 1) * ax[dx]
        }
        val out = FloatArray(channels * outH * outW)
        for (dy in 0 until outH) {
            var f = ((dy + 0.5) * scaleY - 0.5).toFloat()
            val s = floor(f).toInt()
            f -= s.toFloat()
            val y0 = min(max(s, 0), inH - 1)
            val y1 = min(max(s + 1, 0), inH - 1)
            for (c in 0 until channels) {
                for (dx in 0 until outW) {
                    val value = row(c, y0, dx) * (1f - f) + row(c, y1, dx) * f
                    if (channelLast) out[(dy * outW + dx) * channels + c] = value else out[(c * outH + dy) * outW + dx] = value
                }
            }
        }
        return out
    }''',
}
