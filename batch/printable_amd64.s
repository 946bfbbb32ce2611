#include "textflag.h"

// func plainScan(b []byte) (nameLen, valEnd, tsEnd int)
//
// plainScanGo in one pass: the name sixteen bytes at a time (SSE2: a
// byte is printable when, as a signed byte, it is above 0x20 and below
// 0x7f, 0x80 and up being negative), the value's and the timestamp's
// digits eight at a time (nondigit8), one byte at a time where fewer are
// left. It never reads outside b. R11 says which digits are being read:
// 1 the value's, 2 its fraction's, 3 the timestamp's; R13, R8 and R9 hold
// nondigit8's constants.
TEXT ·plainScan(SB), NOSPLIT|NOFRAME, $0-48
	MOVQ	b_base+0(FP), SI
	MOVQ	b_len+8(FP), BX
	XORQ	AX, AX
	MOVQ	$0x2020202020202020, DX
	MOVQ	DX, X1
	PUNPCKLQDQ	X1, X1
	MOVQ	$0x7f7f7f7f7f7f7f7f, DX
	MOVQ	DX, X2
	PUNPCKLQDQ	X2, X2
name16:
	LEAQ	16(AX), CX
	CMPQ	CX, BX
	JA	name1
	MOVOU	(SI)(AX*1), X0
	MOVOU	X0, X3
	PCMPGTB	X1, X3
	MOVOU	X2, X4
	PCMPGTB	X0, X4
	PAND	X4, X3
	PMOVMSKB	X3, DX
	XORL	$0xffff, DX
	JNZ	namefound
	MOVQ	CX, AX
	JMP	name16
namefound:
	BSFL	DX, DX
	ADDQ	DX, AX
	JMP	nameend
name1:
	CMPQ	AX, BX
	JAE	fail
	MOVBLZX	(SI)(AX*1), DX
	CMPL	DX, $0x20
	JBE	nameend
	CMPL	DX, $0x7e
	JA	nameend
	INCQ	AX
	JMP	name1
nameend:
	// AX < BX: b[AX] ends the name.
	TESTQ	AX, AX
	JZ	fail
	CMPB	(SI)(AX*1), $0x20
	JNE	fail
	MOVQ	AX, nameLen+24(FP)
	INCQ	AX
	CMPQ	AX, BX
	JAE	fail
	CMPB	(SI)(AX*1), $0x2d // '-'
	JNE	value
	INCQ	AX
value:
	MOVQ	$0x3030303030303030, R13 // '0'
	MOVQ	$0x4646464646464646, R8  // 0x80 - ':'
	MOVQ	$0x8080808080808080, R9
	MOVQ	$1, R11
digits:
	MOVQ	AX, R10 // where the digits start
digits8:
	LEAQ	8(AX), CX
	CMPQ	CX, BX
	JA	digits1
	MOVQ	(SI)(AX*1), DX
	MOVQ	DX, CX
	SUBQ	R13, CX
	MOVQ	DX, DI
	ADDQ	R8, DI
	ORQ	DX, CX
	ORQ	DI, CX
	ANDQ	R9, CX
	JNZ	digitfound
	ADDQ	$8, AX
	JMP	digits8
digitfound:
	BSFQ	CX, CX
	SHRQ	$3, CX
	ADDQ	CX, AX
	JMP	digitsend
digits1:
	CMPQ	AX, BX
	JAE	digitsend
	MOVBLZX	(SI)(AX*1), DX
	SUBL	$0x30, DX
	CMPL	DX, $9
	JA	digitsend
	INCQ	AX
	JMP	digits1
digitsend:
	CMPQ	AX, R10
	JEQ	fail // no digits
	CMPQ	R11, $3
	JEQ	done
	CMPQ	AX, BX
	JAE	fail
	MOVBLZX	(SI)(AX*1), DX
	CMPQ	R11, $2
	JEQ	valueend
	CMPL	DX, $0x2e // '.'
	JNE	valueend
	INCQ	AX
	MOVQ	$2, R11
	JMP	digits
valueend:
	CMPL	DX, $0x20
	JNE	fail
	MOVQ	AX, valEnd+32(FP)
	INCQ	AX
	MOVQ	$3, R11
	JMP	digits
done:
	MOVQ	AX, tsEnd+40(FP)
	RET
fail:
	MOVQ	$0, nameLen+24(FP)
	MOVQ	$0, valEnd+32(FP)
	MOVQ	$0, tsEnd+40(FP)
	RET
