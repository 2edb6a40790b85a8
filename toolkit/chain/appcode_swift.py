"""Swift templates of the app code (``toolkit.chain.appcode``): the class skeleton, ``fit``, the Core ML component
runner, one function per glue op (``OPS``), and the helpers some of them share (``HELPERS``).

The same arithmetic as the Kotlin templates (``appcode_kotlin``), operation by operation. Placeholders are
``@@NAME@@``.
"""

from __future__ import annotations

CLASS = '''\
@@HEADER@@
// iOS 16+. Add each component's .mlpackage to the app target: Xcode compiles it to <name>.mlmodelc in the app
// bundle, which is what this class loads.

import CoreGraphics
import CoreML
import CoreVideo
import Foundation

/// The @@BUNDLE@@ chain on iOS: each component's Core ML artifact (@@KEY@@) and the glue between them.
/// Not thread-safe: use one instance per thread (or queue).
final class @@CLASS@@ {
    enum Failure: Error {
        case missingModel(String)
        case badImage(String)
        case badOutput(String)
    }

    /// A component output as the chain holds it: channels x height x width (a vector: channels x 1 x 1); labels name
    /// the classes of a Core ML classifier's probabilities.
    struct Out {
        let name: String
        let channels: Int
        let height: Int
        let width: Int
        let labels: [String]
    }

    static let inputHeight = @@HEIGHT@@
    static let inputWidth = @@WIDTH@@
    static let centerCrop = @@CENTER_CROP@@  // manifest input.fit: @@FIT_MODE@@
    private static let dblEpsilon = 2.220446049250313e-16

    private let models: [String: MLModel]

    init(configuration: MLModelConfiguration = MLModelConfiguration(), bundle: Bundle = .main) throws {
        models = try [
@@MODELS@@
        ]
    }

    /// The compiled model (<artifact's file name>.mlmodelc) of a bundle artifact, from the app bundle.
    private static func load(_ artifact: String, _ bundle: Bundle, _ configuration: MLModelConfiguration) throws -> MLModel {
        let resource = ((artifact as NSString).lastPathComponent as NSString).deletingPathExtension
        guard let url = bundle.url(forResource: resource, withExtension: "mlmodelc") else {
            throw Failure.missingModel("\\(artifact): add it to the app target (Xcode compiles it to \\(resource).mlmodelc)")
        }
        return try MLModel(contentsOf: url, configuration: configuration)
    }

@@RUN@@

@@FIT@@

@@COMPONENT@@

@@OPS@@
@@HELPERS@@}
'''

MODEL = '            "@@NAME@@": @@CLASS@@.load("@@PATH@@", bundle, configuration),'

RUN = '''\
    /// The chain on one photo: `fit`, then the manifest's steps in order. Returns the chain's outputs by name:
@@OUTPUT_DOCS@@
    func run(_ image: CGImage) throws -> [String: [Float]] {
        var v: [String: [Float]] = [:]
        v["image"] = try fit(image)
@@STEPS@@
        return [
@@RETURNS@@
        ]
    }'''

COMPONENT_STEP = ('for (name, x) in try runComponent("@@NAME@@", @@PICTURE@@, @@HEIGHT@@, @@WIDTH@@, [@@OUTS@@]) '
                  '{ v["@@ID@@." + name] = x }')

FIT = '''\
    /// The chain's picture from a photo, as toolkit.data.photo.fit makes it: inputHeight x inputWidth x 3 RGB
    /// floats 0-255, channel-last.
    /// - center_crop: the largest centred crop of the picture's aspect ratio. If W * h >= H * w (the photo is
    ///   wider): ch = H, cw = H * w / h; else cw = W, ch = W * h / w (integer division), each at least 1;
    ///   x0 = (W - cw) / 2, y0 = (H - ch) / 2. stretch: the whole photo.
    /// - the crop resized to h x w as cv2.resize does on uint8: INTER_AREA when shrinking (w <= cw and h <= ch),
    ///   else INTER_LINEAR; a crop already h x w is taken as is.
    /// The image must be upright (a UIImage's cgImage ignores its imageOrientation: apply it first, as load_photo
    /// applies EXIF orientation). Pixels are read in the image's own RGB colour space, with no conversion
    /// (load_photo ignores colour profiles too); transparency is composited over white, as load_photo does.
    func fit(_ image: CGImage) throws -> [Float] {
        let photoW = image.width
        let photoH = image.height
        let h = @@CLASS@@.inputHeight
        let w = @@CLASS@@.inputWidth
        var cw = photoW
        var ch = photoH
        var x0 = 0
        var y0 = 0
        if @@CLASS@@.centerCrop {
            if photoW * h >= photoH * w {
                cw = photoH * w / h
                ch = photoH
            } else {
                cw = photoW
                ch = photoW * h / w
            }
            cw = max(cw, 1)
            ch = max(ch, 1)
            x0 = (photoW - cw) / 2
            y0 = (photoH - ch) / 2
        }
        let rgba = try @@CLASS@@.rgbaPixels(image)
        var crop = [Int](repeating: 0, count: ch * cw * 3)
        for y in 0..<ch {
            for x in 0..<cw {
                for c in 0..<3 {
                    crop[(y * cw + x) * 3 + c] = Int(rgba[((y0 + y) * photoW + x0 + x) * 4 + c])
                }
            }
        }
        let fitted: [Int]
        if cw == w && ch == h {
            fitted = crop
        } else if w <= cw && h <= ch {
            fitted = resizeAreaU8(crop, ch, cw, h, w)
        } else {
            fitted = resizeLinearU8(crop, ch, cw, h, w)
        }
        return fitted.map { Float($0) }
    }

    /// The image's pixels as R, G, B, X bytes row by row, drawn over white in its own RGB colour space.
    private static func rgbaPixels(_ image: CGImage) throws -> [UInt8] {
        let width = image.width
        let height = image.height
        let own: CGColorSpace? = image.colorSpace?.model == .rgb ? image.colorSpace : nil
        let space = own ?? CGColorSpaceCreateDeviceRGB()
        var bytes = [UInt8](repeating: 255, count: width * height * 4)
        let drawn = bytes.withUnsafeMutableBytes { (raw: UnsafeMutableRawBufferPointer) -> Bool in
            guard let context = CGContext(data: raw.baseAddress, width: width, height: height, bitsPerComponent: 8,
                                          bytesPerRow: width * 4, space: space,
                                          bitmapInfo: CGImageAlphaInfo.noneSkipLast.rawValue) else { return false }
            context.setFillColor(red: 1, green: 1, blue: 1, alpha: 1)
            context.fill(CGRect(x: 0, y: 0, width: width, height: height))
            context.interpolationQuality = .none
            context.draw(image, in: CGRect(x: 0, y: 0, width: width, height: height))
            return true
        }
        guard drawn else { throw Failure.badImage("cannot draw the photo into an 8-bit RGB bitmap") }
        return bytes
    }

    /// cv2.resize(INTER_AREA) of an RGB uint8 picture, shrinking: OpenCV's resizeAreaFast_ / resizeArea_.
    private func resizeAreaU8(_ src: [Int], _ inH: Int, _ inW: Int, _ outH: Int, _ outW: Int) -> [Int] {
        let scaleX = 1.0 / (Double(outW) / Double(inW))
        let scaleY = 1.0 / (Double(outH) / Double(inH))
        let ix = Int(scaleX.rounded(.toNearestOrEven))
        let iy = Int(scaleY.rounded(.toNearestOrEven))
        var out = [Int](repeating: 0, count: outH * outW * 3)
        if abs(scaleX - Double(ix)) < @@CLASS@@.dblEpsilon && abs(scaleY - Double(iy)) < @@CLASS@@.dblEpsilon {  // whole ix x iy blocks
            let scale = Float(1) / Float(ix * iy)
            for dy in 0..<outH {
                for dx in 0..<outW {
                    for c in 0..<3 {
                        var sum = 0
                        for y in (dy * iy)..<((dy + 1) * iy) {
                            for x in (dx * ix)..<((dx + 1) * ix) {
                                sum += src[(y * inW + x) * 3 + c]
                            }
                        }
                        out[(dy * outW + dx) * 3 + c] = ix == 2 && iy == 2 ? (sum + 2) >> 2 : roundU8(Float(sum) * scale)
                    }
                }
            }
            return out
        }
        let xs = areaTable(inW, outW, scaleX)
        let ys = areaTable(inH, outH, scaleY)
        var row = [Float](repeating: 0, count: outW * 3)
        var acc = [Float](repeating: 0, count: outW * 3)
        var prev = ys[0].dst
        for entry in ys {
            for i in 0..<row.count {
                row[i] = 0
            }
            for t in xs {
                let d = t.dst * 3
                let s = (entry.src * inW + t.src) * 3
                for c in 0..<3 {
                    row[d + c] = row[d + c] + Float(src[s + c]) * t.alpha
                }
            }
            if entry.dst != prev {
                for i in 0..<acc.count {
                    out[prev * outW * 3 + i] = roundU8(acc[i])
                    acc[i] = entry.alpha * row[i]
                }
                prev = entry.dst
            } else {
                for i in 0..<acc.count {
                    acc[i] = acc[i] + entry.alpha * row[i]
                }
            }
        }
        for i in 0..<acc.count {
            out[prev * outW * 3 + i] = roundU8(acc[i])
        }
        return out
    }

    /// OpenCV's computeResizeAreaTab: which source pixels make each output pixel, and their weights.
    private func areaTable(_ inSize: Int, _ outSize: Int, _ scale: Double) -> [(dst: Int, src: Int, alpha: Float)] {
        var table: [(dst: Int, src: Int, alpha: Float)] = []
        for d in 0..<outSize {
            let f1 = Double(d) * scale
            let f2 = f1 + scale
            let cell = min(scale, Double(inSize) - f1)
            let s2 = min(Int(f2.rounded(.down)), inSize - 1)
            let s1 = min(Int(f1.rounded(.up)), s2)
            if Double(s1) - f1 > 1e-3 {
                table.append((dst: d, src: s1 - 1, alpha: Float((Double(s1) - f1) / cell)))
            }
            for s in s1..<s2 {
                table.append((dst: d, src: s, alpha: Float(1.0 / cell)))
            }
            if f2 - Double(s2) > 1e-3 {
                table.append((dst: d, src: s2, alpha: Float(min(min(f2 - Double(s2), 1.0), cell) / cell)))
            }
        }
        return table
    }

    /// cv2.resize(INTER_LINEAR) of an RGB uint8 picture: 11-bit fixed-point weights, rows combined as OpenCV does.
    private func resizeLinearU8(_ src: [Int], _ inH: Int, _ inW: Int, _ outH: Int, _ outW: Int) -> [Int] {
        let scaleX = 1.0 / (Double(outW) / Double(inW))
        let scaleY = 1.0 / (Double(outH) / Double(inH))
        var sx = [Int](repeating: 0, count: outW)
        var a0 = [Int](repeating: 0, count: outW)
        var a1 = [Int](repeating: 0, count: outW)
        for dx in 0..<outW {
            var f = Float((Double(dx) + 0.5) * scaleX - 0.5)
            var s = Int(f.rounded(.down))
            f -= Float(s)
            if s < 0 {
                f = 0
                s = 0
            }
            if s >= inW - 1 {
                f = 0
                s = inW - 1
            }
            sx[dx] = s
            a0[dx] = fixedPoint(1 - f)
            a1[dx] = fixedPoint(f)
        }
        func row(_ y: Int) -> [Int] {
            var r = [Int](repeating: 0, count: outW * 3)
            for dx in 0..<outW {
                let s = sx[dx]
                for c in 0..<3 {
                    let p = src[(y * inW + s) * 3 + c]
                    r[dx * 3 + c] = s == inW - 1 ? p * 2048 : p * a0[dx] + src[(y * inW + s + 1) * 3 + c] * a1[dx]
                }
            }
            return r
        }
        var out = [Int](repeating: 0, count: outH * outW * 3)
        for dy in 0..<outH {
            var f = Float((Double(dy) + 0.5) * scaleY - 0.5)
            let s = Int(f.rounded(.down))
            f -= Float(s)
            let b0 = fixedPoint(1 - f)
            let b1 = fixedPoint(f)
            let r0 = row(min(max(s, 0), inH - 1))
            let r1 = row(min(max(s + 1, 0), inH - 1))
            for i in 0..<(outW * 3) {
                let value = (((b0 * (r0[i] >> 4)) >> 16) + ((b1 * (r1[i] >> 4)) >> 16) + 2) >> 2
                out[dy * outW * 3 + i] = min(max(value, 0), 255)
            }
        }
        return out
    }

    private func fixedPoint(_ f: Float) -> Int {
        return Int((f * 2048).rounded(.toNearestOrEven))
    }

    private func roundU8(_ f: Float) -> Int {
        return min(max(Int(f.rounded(.toNearestOrEven)), 0), 255)
    }'''

COMPONENT = '''\
    /// One component on a picture (height x width x 3, RGB 0-255, channel-last): the picture goes in as the model's
    /// image input (a 32BGRA pixel buffer, each value rounded to the nearest byte, ties to even, as skinkit feeds
    /// it); each output comes back by name. Core ML's dense outputs are channel-first (1 x C x H x W) already;
    /// a classifier's output is its probability dictionary, read in label order.
    private func runComponent(_ name: String, _ picture: [Float], _ height: Int, _ width: Int, _ outs: [Out]) throws -> [String: [Float]] {
        guard let model = models[name] else { throw Failure.missingModel(name) }
        guard picture.count == height * width * 3 else {
            throw Failure.badImage("\\(name) takes a \\(height)x\\(width)x3 picture, got \\(picture.count) values")
        }
        let buffer = try pixelBuffer(picture, height, width)
        let input = try MLDictionaryFeatureProvider(dictionary: ["image": MLFeatureValue(pixelBuffer: buffer)])
        let result = try model.prediction(from: input)
        var values: [String: [Float]] = [:]
        for o in outs {
            let what = name + "." + o.name
            if let array = result.featureValue(for: o.name)?.multiArrayValue {
                values[o.name] = try read(array, o.channels * o.height * o.width, what)
            } else if let probabilities = model.modelDescription.predictedProbabilitiesName,
                      let scores = result.featureValue(for: probabilities)?.dictionaryValue {
                var row: [Float] = []
                for label in o.labels {
                    guard let p = scores[AnyHashable(label)] else { throw Failure.badOutput(what + ": no probability for " + label) }
                    row.append(p.floatValue)
                }
                values[o.name] = row
            } else {
                throw Failure.badOutput(what + ": the model has no such output")
            }
        }
        return values
    }

    /// A 32BGRA pixel buffer of a picture (height x width x 3 RGB floats 0-255).
    private func pixelBuffer(_ picture: [Float], _ height: Int, _ width: Int) throws -> CVPixelBuffer {
        var made: CVPixelBuffer?
        let attributes = [kCVPixelBufferCGImageCompatibilityKey: true,
                          kCVPixelBufferCGBitmapContextCompatibilityKey: true] as CFDictionary
        guard CVPixelBufferCreate(kCFAllocatorDefault, width, height, kCVPixelFormatType_32BGRA, attributes, &made) == kCVReturnSuccess,
              let buffer = made else { throw Failure.badImage("cannot make a \\(width)x\\(height) pixel buffer") }
        CVPixelBufferLockBaseAddress(buffer, [])
        defer { CVPixelBufferUnlockBaseAddress(buffer, []) }
        guard let base = CVPixelBufferGetBaseAddress(buffer) else { throw Failure.badImage("the pixel buffer has no memory") }
        let rowBytes = CVPixelBufferGetBytesPerRow(buffer)
        let bytes = base.assumingMemoryBound(to: UInt8.self)
        for y in 0..<height {
            for x in 0..<width {
                let i = (y * width + x) * 3
                let o = y * rowBytes + x * 4
                bytes[o] = byte(picture[i + 2])
                bytes[o + 1] = byte(picture[i + 1])
                bytes[o + 2] = byte(picture[i])
                bytes[o + 3] = 255
            }
        }
        return buffer
    }

    private func byte(_ value: Float) -> UInt8 {
        return UInt8(min(max(value.rounded(.toNearestOrEven), 0), 255))
    }

    /// An MLMultiArray's values in the row-major order of its shape (its strides may pad rows), as Float.
    private func read(_ array: MLMultiArray, _ count: Int, _ what: String) throws -> [Float] {
        guard array.count == count else { throw Failure.badOutput(what + ": \\(array.count) values, the manifest says \\(count)") }
        let shape = array.shape.map { $0.intValue }
        let strides = array.strides.map { $0.intValue }
        var offsets = [Int](repeating: 0, count: count)
        var indices: [[NSNumber]] = []
        var index = [Int](repeating: 0, count: shape.count)
        for i in 0..<count {
            var offset = 0
            for d in 0..<shape.count {
                offset += index[d] * strides[d]
            }
            offsets[i] = offset
            if array.dataType != .float32 && array.dataType != .double {
                indices.append(index.map { NSNumber(value: $0) })
            }
            var d = shape.count - 1
            while d >= 0 {
                index[d] += 1
                if index[d] < shape[d] { break }
                index[d] = 0
                d -= 1
            }
        }
        var out = [Float](repeating: 0, count: count)
        switch array.dataType {
        case .float32:
            array.withUnsafeBufferPointer(ofType: Float.self) { p in
                for i in 0..<count {
                    out[i] = p[offsets[i]]
                }
            }
        case .double:
            array.withUnsafeBufferPointer(ofType: Double.self) { p in
                for i in 0..<count {
                    out[i] = Float(p[offsets[i]])
                }
            }
        default:
            for i in 0..<count {
                out[i] = array[indices[i]].floatValue
            }
        }
        return out
    }'''

OPS: dict[str, str] = {
    "resize": '''\
    /// x: channels x inH x inW (channel-first), inH x inW x channels (channelLast: a picture), or inH x inW (nearest:
    /// a mask or label map, channels = 1) -> the same at outH x outW.
    func resize(_ x: [Float], _ channels: Int, _ inH: Int, _ inW: Int, _ outH: Int, _ outW: Int,
                nearest: Bool, channelLast: Bool) -> [Float] {
        if !nearest {
            return bilinear(x, channels, inH, inW, outH, outW, channelLast)
        }
        // source row floor((i + 0.5) * in / out), clamped (toolkit.glue.nearest_indices)
        let rows = (0..<outH).map { min(Int((Double($0) + 0.5) * Double(inH) / Double(outH)), inH - 1) }
        let cols = (0..<outW).map { min(Int((Double($0) + 0.5) * Double(inW) / Double(outW)), inW - 1) }
        var out = [Float](repeating: 0, count: outH * outW)
        for y in 0..<outH {
            for xx in 0..<outW {
                out[y * outW + xx] = x[rows[y] * inW + cols[xx]]
            }
        }
        return out
    }''',
    "softmax": '''\
    /// x: classes x positions (positions = H * W, or 1 for a vector) -> probabilities over the classes, in Double.
    func softmax(_ x: [Float], _ classes: Int, _ positions: Int) -> [Float] {
        var out = [Float](repeating: 0, count: x.count)
        var e = [Double](repeating: 0, count: classes)
        for p in 0..<positions {
            var m = -Double.infinity
            for c in 0..<classes {
                m = max(m, Double(x[c * positions + p]))
            }
            var sum = 0.0
            for c in 0..<classes {
                e[c] = exp(Double(x[c * positions + p]) - m)
                sum += e[c]
            }
            for c in 0..<classes {
                out[c * positions + p] = Float(e[c] / sum)
            }
        }
        return out
    }''',
    "argmax": '''\
    /// x: classes x positions -> per position the class index (as a Float), the first on ties.
    func argmax(_ x: [Float], _ classes: Int, _ positions: Int) -> [Float] {
        var out = [Float](repeating: 0, count: positions)
        for p in 0..<positions {
            var best = 0
            for c in 1..<max(classes, 1) where x[c * positions + p] > x[best * positions + p] {
                best = c
            }
            out[p] = Float(best)
        }
        return out
    }''',
    "class_mask": '''\
    /// labels (class indices) -> 1.0 where the label is classIndex, else 0.0.
    func classMask(_ labels: [Float], _ classIndex: Int) -> [Float] {
        return labels.map { $0 == Float(classIndex) ? 1 : 0 }
    }''',
    "threshold": '''\
    /// x: a mask or a one-channel map -> 1.0 where x > value (compared in Float), else 0.0.
    func threshold(_ x: [Float], _ value: Float) -> [Float] {
        return x.map { $0 > value ? 1 : 0 }
    }''',
    "apply_mask": '''\
    /// image: H x W x 3, mask: H x W -> image * mask + fill * (1 - mask) per channel, in Float.
    func applyMask(_ image: [Float], _ mask: [Float], _ fill: Float) -> [Float] {
        precondition(image.count == mask.count * 3, "applyMask: the picture and the mask differ in size")
        var out = [Float](repeating: 0, count: image.count)
        for i in 0..<image.count {
            let m = mask[i / 3]
            out[i] = image[i] * m + fill * (1 - m)
        }
        return out
    }''',
    "crop_to_mask": '''\
    /// image: height x width x 3, mask: height x width -> the crop box (toolkit.glue.crop_box) of the picture resized
    /// bilinearly to outH x outW x 3.
    func cropToMask(_ image: [Float], _ mask: [Float], _ height: Int, _ width: Int, _ outH: Int, _ outW: Int,
                    _ margin: Double) -> [Float] {
        precondition(image.count == height * width * 3 && mask.count == height * width, "cropToMask: sizes differ")
        var bx0 = width
        var by0 = height
        var bx1 = -1
        var by1 = -1
        for y in 0..<height {
            for x in 0..<width where mask[y * width + x] > 0.5 {
                bx0 = min(bx0, x)
                bx1 = max(bx1, x)
                by0 = min(by0, y)
                by1 = max(by1, y)
            }
        }
        var x0 = 0
        var y0 = 0
        var x1 = width
        var y1 = height
        if bx1 >= 0 {  // an empty mask keeps the whole picture
            let mx = margin * Double(bx1 + 1 - bx0)
            let my = margin * Double(by1 + 1 - by0)
            x0 = max(0, Int((Double(bx0) - mx).rounded(.down)))
            y0 = max(0, Int((Double(by0) - my).rounded(.down)))
            x1 = min(width, Int((Double(bx1 + 1) + mx).rounded(.up)))
            y1 = min(height, Int((Double(by1 + 1) + my).rounded(.up)))
        }
        let cw = x1 - x0
        let ch = y1 - y0
        var crop = [Float](repeating: 0, count: ch * cw * 3)
        for y in 0..<ch {
            for i in 0..<(cw * 3) {
                crop[y * cw * 3 + i] = image[((y0 + y) * width + x0) * 3 + i]
            }
        }
        return bilinear(crop, 3, ch, cw, outH, outW, true)
    }''',
    "coverage": '''\
    /// mask -> [the fraction of its pixels that are 1.0] (its mean, in Double).
    func coverage(_ mask: [Float]) -> [Float] {
        var sum = 0.0
        for m in mask {
            sum += Double(m)
        }
        return [Float(sum / Double(mask.count))]
    }''',
    "region_stats": '''\
    /// labels: H x W class indices, image: H x W x 3, within: H x W weights or nil (the whole picture) ->
    /// (area, intensity), one entry per class of classes, in Double.
    func regionStats(_ labels: [Float], _ image: [Float], _ within: [Float]?, _ classes: [Int]) -> (area: [Float], intensity: [Float]) {
        precondition(image.count == labels.count * 3 && (within == nil || within!.count == labels.count), "regionStats: sizes differ")
        var total = 0.0
        for i in 0..<labels.count {
            total += within.map { Double($0[i]) } ?? 1.0
        }
        total = max(total, 1.0)
        var area = [Float](repeating: 0, count: classes.count)
        var intensity = [Float](repeating: 0, count: classes.count)
        for (j, k) in classes.enumerated() {
            var n = 0.0
            var sum = 0.0
            for i in 0..<labels.count where labels[i] == Float(k) {
                let weight = within.map { Double($0[i]) } ?? 1.0
                let gray = @@LUMA_R@@ * Double(image[3 * i]) + @@LUMA_G@@ * Double(image[3 * i + 1]) + @@LUMA_B@@ * Double(image[3 * i + 2])
                n += weight
                sum += gray * weight
            }
            area[j] = Float(n / total)
            intensity[j] = n > 0 ? Float(sum / max(n, 1.0)) : 0
        }
        return (area: area, intensity: intensity)
    }''',
    "to_image": '''\
    /// x: 3 x H x W (a model's [0, 1] RGB) -> H x W x 3 pixels: x * scale, clipped to 0-255.
    func toImage(_ x: [Float], _ height: Int, _ width: Int, _ scale: Float) -> [Float] {
        precondition(x.count == 3 * height * width, "toImage: a 3 x \\(height) x \\(width) picture has \\(3 * height * width) values")
        let plane = height * width
        var out = [Float](repeating: 0, count: x.count)
        for i in 0..<x.count {
            out[i] = min(max(x[(i % 3) * plane + i / 3] * scale, 0), 255)
        }
        return out
    }''',
    "paste_instances": '''\
    /// An instance segmenter's first round(count) detections as a height x width label map: 1 + the class of the
    /// highest-scoring detection whose pasted mask is >= threshold at the pixel (the first, on ties), 0 elsewhere.
    /// boxes: k x 4 [x1, y1, x2, y2] in 0-1; masks: k x m x m over each box. Pasting (toolkit.glue.paste_masks):
    /// pixel row i (centre (i + 0.5) / height) inside [y1, y2) reads mask row u = ((i + 0.5) / height - y1) /
    /// (y2 - y1) * m - 0.5, clamped to [0, m - 1], linear between floor(u) and floor(u) + 1 (the last row at
    /// the edge); columns the same; 0 outside the box.
    func pasteInstances(_ boxes: [Float], _ scores: [Float], _ classes: [Float], _ masks: [Float], _ count: [Float],
                        _ k: Int, _ m: Int, _ height: Int, _ width: Int, _ threshold: Float) -> [Float] {
        precondition(boxes.count == 4 * k && scores.count == k && classes.count == k && masks.count == k * m * m,
                     "pasteInstances: sizes differ")
        var labels = [Float](repeating: 0, count: height * width)
        var best = [Float](repeating: -Float.infinity, count: height * width)
        let valid = min(max(Int(count[0].rounded()), 0), k)
        for d in 0..<valid {
            let x1 = Double(boxes[4 * d]), y1 = Double(boxes[4 * d + 1]), x2 = Double(boxes[4 * d + 2]), y2 = Double(boxes[4 * d + 3])
            if x2 <= x1 || y2 <= y1 { continue }
            for i in 0..<height {
                let cy = (Double(i) + 0.5) / Double(height)
                if cy < y1 || cy >= y2 { continue }
                let u = min(max((cy - y1) / (y2 - y1) * Double(m) - 0.5, 0), Double(m - 1))
                let r0 = Int(u.rounded(.down)), r1 = min(r0 + 1, m - 1), fy = Float(u - Double(r0))
                for j in 0..<width {
                    let cx = (Double(j) + 0.5) / Double(width)
                    if cx < x1 || cx >= x2 { continue }
                    let v = min(max((cx - x1) / (x2 - x1) * Double(m) - 0.5, 0), Double(m - 1))
                    let c0 = Int(v.rounded(.down)), c1 = min(c0 + 1, m - 1), fx = Float(v - Double(c0))
                    let base = d * m * m
                    let top = masks[base + r0 * m + c0] * (1 - fx) + masks[base + r0 * m + c1] * fx
                    let bottom = masks[base + r1 * m + c0] * (1 - fx) + masks[base + r1 * m + c1] * fx
                    let p = i * width + j
                    if top * (1 - fy) + bottom * fy >= threshold && scores[d] > best[p] {
                        best[p] = scores[d]
                        labels[p] = classes[d].rounded() + 1
                    }
                }
            }
        }
        return labels
    }''',
    "count_regions": '''\
    /// labels: height x width class indices, within: a mask or nil -> per class of classes the number of 8-connected
    /// regions of that class inside within (> 0.5) with at least minPixels pixels.
    func countRegions(_ labels: [Float], _ within: [Float]?, _ height: Int, _ width: Int, _ classes: [Int],
                      _ minPixels: Int) -> [Float] {
        precondition(labels.count == height * width && (within == nil || within!.count == labels.count), "countRegions: sizes differ")
        var counts = [Float](repeating: 0, count: classes.count)
        for (j, k) in classes.enumerated() {
            var on = [Bool](repeating: false, count: labels.count)
            for i in 0..<labels.count {
                on[i] = labels[i] == Float(k) && (within == nil || within![i] > 0.5)
            }
            var seen = [Bool](repeating: false, count: labels.count)
            var stack: [Int] = []
            var regions = 0
            for start in 0..<labels.count where on[start] && !seen[start] {
                var size = 0
                stack.append(start)
                seen[start] = true
                while let p = stack.popLast() {
                    size += 1
                    let y = p / width
                    let x = p % width
                    for yy in max(y - 1, 0)...min(y + 1, height - 1) {
                        for xx in max(x - 1, 0)...min(x + 1, width - 1) {
                            let q = yy * width + xx
                            if on[q] && !seen[q] {
                                seen[q] = true
                                stack.append(q)
                            }
                        }
                    }
                }
                if size >= minPixels {
                    regions += 1
                }
            }
            counts[j] = Float(regions)
        }
        return counts
    }''',
}

HELPERS: dict[str, str] = {
    "bilinear": '''\
    /// cv2.resize(INTER_LINEAR) of Float values, channel by channel: half-pixel centres, no antialiasing; a column left
    /// of the first (right of the last) source pixel takes that pixel, rows are clamped to the picture. OpenCV's own
    /// arithmetic. The host's OpenCV may run Intel IPP's instead, and at an exact 2x shrink it sums 2 x 2 blocks in
    /// another order: equal to float rounding (about 1e-5 relative).
    private func bilinear(_ x: [Float], _ channels: Int, _ inH: Int, _ inW: Int, _ outH: Int, _ outW: Int,
                          _ channelLast: Bool) -> [Float] {
        if inH == outH && inW == outW {
            return x
        }
        let scaleX = 1.0 / (Double(outW) / Double(inW))
        let scaleY = 1.0 / (Double(outH) / Double(inH))
        var sx = [Int](repeating: 0, count: outW)
        var ax = [Float](repeating: 0, count: outW)
        for dx in 0..<outW {
            var f = Float((Double(dx) + 0.5) * scaleX - 0.5)
            var s = Int(f.rounded(.down))
            f -= Float(s)
            if s < 0 {
                f = 0
                s = 0
            }
            if s >= inW - 1 {
                f = 0
                s = inW - 1
            }
            sx[dx] = s
            ax[dx] = f
        }
        func at(_ c: Int, _ y: Int, _ xx: Int) -> Float {
            return channelLast ? x[(y * inW + xx) * channels + c] : x[(c * inH + y) * inW + xx]
        }
        func row(_ c: Int, _ y: Int, _ dx: Int) -> Float {
            let s = sx[dx]
            return s == inW - 1 ? at(c, y, s) : at(c, y, s) * (1 - ax[dx]) + at(c, y, s + 1) * ax[dx]
        }
        var out = [Float](repeating: 0, count: channels * outH * outW)
        for dy in 0..<outH {
            var f = Float((Double(dy) + 0.5) * scaleY - 0.5)
            let s = Int(f.rounded(.down))
            f -= Float(s)
            let y0 = min(max(s, 0), inH - 1)
            let y1 = min(max(s + 1, 0), inH - 1)
            for c in 0..<channels {
                for dx in 0..<outW {
                    let value = row(c, y0, dx) * (1 - f) + row(c, y1, dx) * f
                    if channelLast {
                        out[(dy * outW + dx) * channels + c] = value
                    } else {
                        out[(c * outH + dy) * outW + dx] = value
                    }
                }
            }
        }
        return out
    }''',
}
