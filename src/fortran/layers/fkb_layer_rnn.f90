!! Recurrent layers: simple_rnn, lstm, gru, with Keras 3's semantics (docs/format.md, 1.2).
!!
!! A sample is (T, C): x(C, T) in Fortran, so a batch is x(C, T*batch) with sample b's step t
!! in column t + T*b. The input projection of every step of the whole batch is one GEMM into
!! scratch, xw(nU, T*batch) (nU = gates*units); each step is then one GEMM of the recurrent
!! kernel on h(U, batch) followed by the fused gate nonlinearities, which read the step's
!! column of every sample from xw. Keras' order of operations is kept:
!!
!!   simple_rnn  h = act((x.W + b) + h.U)
!!   lstm        z = (x.W + h.U) + b; i, f, o = ract(z_i, z_f, z_o); c = f*c + i*act(z_c);
!!               h = o*act(c)                                    (gate order i, f, c, o)
!!   gru         reset_after=1: xz, xr, xh = x.W + b_in; rz, rr, rh = h.U + b_rec;
!!               z, r = ract(xz + rz, xr + rr); hh = act(xh + r*rh)
!!               reset_after=0: xz, xr, xh = x.W + b; rz, rr = h.U_zr;
!!               z, r = ract(...); hh = act(xh + (r*h).U_h)
!!               h = z*h + (1-z)*hh                              (gate order z, r, h)
!!
!! Activations are applied gate by gate (so softmax acts over the units of one gate, as in
!! Keras). With go_backwards the steps are processed from T down to 1 and a returned sequence
!! is in processed order, as Keras 3 returns it.
!!
!! Recurrent state (fkb_rnn_state): the layer's slice holds h(U, batch), then for lstm
!! c(U, batch); state_size is U (simple_rnn, gru) or 2U (lstm) values per sample.
module fkb_layer_rnn
  use iso_fortran_env, only: real32, real64, int64
  use fkb_errors, only: FKB_OK, FKB_ERR_FORMAT, FKB_ERR_UNSUPPORTED, set_error
  use fkb_config, only: fkb_config_t, int_text
  use fkb_layer, only: fkb_layer_t
  use fkb_activation, only: fkb_activation_t, read_activation, write_activation, &
                            activation_from_name, activation_name, apply_activation
  use fkb_blas, only: gemm, gemv, BLAS_INT_MAX
  implicit none
  private
  public :: fkb_rnn_t, RNN_SIMPLE, RNN_LSTM, RNN_GRU

  integer, parameter :: RNN_SIMPLE = 1, RNN_LSTM = 2, RNN_GRU = 3

  type, extends(fkb_layer_t) :: fkb_rnn_t
    integer :: kind = RNN_SIMPLE
    integer(int64) :: units = 0, steps = 0, channels = 0
    integer(int64) :: gates = 1                  !! 1 (simple_rnn), 4 (lstm), 3 (gru)
    type(fkb_activation_t) :: act, ract          !! activation, recurrent_activation
    logical :: use_bias = .true., return_sequences = .false., go_backwards = .false.
    logical :: stateful = .false., reset_after = .true.
    !> GRU with reset_after=0: the recurrent kernel split into its z,r rows and its h rows
    !> (Fortran u(3U, U) -> uzr(2U, U), uh(U, U)), so that both products are plain GEMMs.
    real(real32), allocatable :: uzr32(:), uh32(:)
    real(real64), allocatable :: uzr64(:), uh64(:)
  contains
    procedure :: configure => rnn_configure
    procedure :: options => rnn_options
    procedure :: prepare => rnn_prepare
    procedure :: forward_r32 => rnn_forward_r32
    procedure :: forward_r64 => rnn_forward_r64
    procedure :: forward_ws_r32 => rnn_forward_ws_r32
    procedure :: splits_batch => rnn_splits_batch
    procedure :: forward_ws_r64 => rnn_forward_ws_r64
    procedure :: rec_rows => rnn_rec_rows
  end type fkb_rnn_t

contains

  logical function rnn_splits_batch(self)
    class(fkb_rnn_t), intent(in) :: self
    rnn_splits_batch = .true.
  end function rnn_splits_batch

  subroutine rnn_configure(self, cfg, stat, msg)
    class(fkb_rnn_t), intent(inout) :: self
    type(fkb_config_t), intent(inout) :: cfg
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    character(len=:), allocatable :: text
    integer(int64) :: nu
    integer(int64), allocatable :: shp(:)

    select case (self%type_name)
    case ('simple_rnn')
      self%kind = RNN_SIMPLE
      self%gates = 1
    case ('lstm')
      self%kind = RNN_LSTM
      self%gates = 4
    case ('gru')
      self%kind = RNN_GRU
      self%gates = 3
    case default
      call set_error(stat, msg, FKB_ERR_UNSUPPORTED, cfg%where // ": unknown recurrent layer '" &
                     // self%type_name // "' (simple_rnn, lstm or gru)")
      return
    end select

    shp = self%in_shapes(1)%d
    if (size(shp) /= 2) then
      call set_error(stat, msg, FKB_ERR_FORMAT, cfg%where // &
                     ': needs input of shape (steps, channels), got rank ' // &
                     int_text(size(shp, kind=int64)))
      return
    end if
    self%steps = shp(1)
    self%channels = shp(2)

    call cfg%get_int('units', self%units, stat, msg)
    if (stat /= FKB_OK) return
    nu = self%gates * self%units
    if (self%units < 1 .or. nu > BLAS_INT_MAX .or. self%steps * self%units > BLAS_INT_MAX) then
      call set_error(stat, msg, FKB_ERR_FORMAT, cfg%where // ': units out of range, got ' // &
                     int_text(self%units))
      return
    end if
    call read_activation(cfg, self%act, stat, msg)
    if (stat == FKB_OK) call cfg%get_bool('use_bias', self%use_bias, stat, msg)
    if (stat == FKB_OK) call cfg%get_bool('return_sequences', self%return_sequences, stat, msg)
    if (stat == FKB_OK) call cfg%get_bool('go_backwards', self%go_backwards, stat, msg)
    if (stat == FKB_OK) call cfg%get_bool('stateful', self%stateful, stat, msg)
    if (stat /= FKB_OK) return
    if (self%kind /= RNN_SIMPLE) then
      call cfg%get_text('recurrent_activation', text, stat, msg)
      if (stat /= FKB_OK) return
      call activation_from_name(text, self%ract, stat, msg)
      if (stat /= FKB_OK) then
        msg = cfg%where // ': recurrent_activation: ' // msg
        return
      end if
    end if
    self%reset_after = .false.
    if (self%kind == RNN_GRU) then
      call cfg%get_bool('reset_after', self%reset_after, stat, msg)
      if (stat /= FKB_OK) return
    end if

    ! Tensors, Keras shapes: kernel (C, nU), recurrent_kernel (U, nU), bias (nU) or, for a
    ! GRU with reset_after=1, (2, nU): input bias then recurrent bias.
    if (self%use_bias) then
      if (self%kind == RNN_GRU .and. self%reset_after) then
        call self%declare_params([character(len=16) :: 'kernel', 'recurrent_kernel', 'bias'], &
                                 reshape([self%channels, nu, self%units, nu, 2_int64, nu], [2, 3]))
      else
        call self%declare_params([character(len=16) :: 'kernel', 'recurrent_kernel', 'bias'], &
                                 reshape([self%channels, nu, self%units, nu, nu, -1_int64], [2, 3]))
      end if
    else
      call self%declare_params([character(len=16) :: 'kernel', 'recurrent_kernel'], &
                               reshape([self%channels, nu, self%units, nu], [2, 2]))
    end if

    if (self%return_sequences) then
      self%out_shape = [self%steps, self%units]
    else
      self%out_shape = [self%units]
    end if
    self%n_out = product(self%out_shape)
    ! Scratch per sample: xw (nU per step), h, g (recurrent product), and per kind c (lstm)
    ! or r*h and its product (gru, reset_after=0).
    ! lstm and gru also zb (rec_rows per sample): the gate-major pre-activations of a block.
    self%scratch = nu * self%steps + self%units + self%rec_rows()
    if (self%kind == RNN_LSTM) self%scratch = self%scratch + self%units
    if (self%kind == RNN_GRU .and. .not. self%reset_after) &
      self%scratch = self%scratch + 2 * self%units
    if (self%kind /= RNN_SIMPLE) self%scratch = self%scratch + self%rec_rows()
    ! and xs (C per step): the input reordered step-major, so that a step's xw is contiguous.
    self%scratch = self%scratch + self%channels * self%steps
    self%state_size = self%units
    if (self%kind == RNN_LSTM) self%state_size = 2 * self%units
  end subroutine rnn_configure

  pure integer(int64) function rnn_rec_rows(self)
    !! Rows of the per-step recurrent product: nU, or 2U for a GRU with reset_after=0.
    class(fkb_rnn_t), intent(in) :: self
    rnn_rec_rows = self%gates * self%units
    if (self%kind == RNN_GRU .and. .not. self%reset_after) rnn_rec_rows = 2 * self%units
  end function rnn_rec_rows

  subroutine rnn_options(self, cfg)
    class(fkb_rnn_t), intent(in) :: self
    type(fkb_config_t), intent(inout) :: cfg
    call cfg%set('units', int_text(self%units))
    call write_activation(self%act, cfg)
    call cfg%set('use_bias', merge('1', '0', self%use_bias))
    call cfg%set('return_sequences', merge('1', '0', self%return_sequences))
    call cfg%set('go_backwards', merge('1', '0', self%go_backwards))
    call cfg%set('stateful', merge('1', '0', self%stateful))
    if (self%kind /= RNN_SIMPLE) call cfg%set('recurrent_activation', activation_name(self%ract))
    if (self%kind == RNN_GRU) call cfg%set('reset_after', merge('1', '0', self%reset_after))
  end subroutine rnn_options

  subroutine rnn_prepare(self, stat, msg)
    !! GRU with reset_after=0: split the recurrent kernel (Fortran u(3U, U)) by rows.
    class(fkb_rnn_t), intent(inout) :: self
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    integer(int64) :: uu, k
    stat = FKB_OK
    if (.not. (self%kind == RNN_GRU .and. .not. self%reset_after)) return
    uu = self%units
    associate (rk => self%params(2))
      if (allocated(rk%r32)) then
        if (allocated(self%uzr32)) deallocate(self%uzr32, self%uh32)
        allocate(self%uzr32(2 * uu * uu), self%uh32(uu * uu))
        do k = 0, uu - 1
          self%uzr32(2 * uu * k + 1:2 * uu * (k + 1)) = rk%r32(3 * uu * k + 1:3 * uu * k + 2 * uu)
          self%uh32(uu * k + 1:uu * (k + 1)) = rk%r32(3 * uu * k + 2 * uu + 1:3 * uu * (k + 1))
        end do
      end if
      if (allocated(rk%r64)) then
        if (allocated(self%uzr64)) deallocate(self%uzr64, self%uh64)
        allocate(self%uzr64(2 * uu * uu), self%uh64(uu * uu))
        do k = 0, uu - 1
          self%uzr64(2 * uu * k + 1:2 * uu * (k + 1)) = rk%r64(3 * uu * k + 1:3 * uu * k + 2 * uu)
          self%uh64(uu * k + 1:uu * (k + 1)) = rk%r64(3 * uu * k + 2 * uu + 1:3 * uu * (k + 1))
        end do
      end if
    end associate
  end subroutine rnn_prepare

  ! ---- float32 ----

  subroutine rnn_forward_r32(self, x, y)
    !! Without a workspace (direct use of the layer): allocates its scratch.
    class(fkb_rnn_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :)
    real(real32), intent(inout), contiguous :: y(:, :)
    real(real32), allocatable :: ws(:)
    allocate(ws(self%scratch * size(x, 2, kind=int64)))
    call self%forward_ws_r32(x, y, ws)
  end subroutine rnn_forward_r32

  subroutine rnn_forward_ws_r32(self, x, y, ws, state)
    class(fkb_rnn_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :)
    real(real32), intent(inout), contiguous :: y(:, :)
    real(real32), intent(inout), contiguous :: ws(:)
    real(real32), intent(inout), contiguous, optional :: state(:)
    real(real32) :: none(1)
    integer(int64) :: n, o(9)
    n = size(x, 2, kind=int64)
    call offsets(self, n, o)
    none = 0
    if (self%kind == RNN_GRU .and. .not. self%reset_after) then
      if (self%use_bias) then
        call run(self%uzr32, self%params(3)%r32, self%uh32)
      else
        call run(self%uzr32, none, self%uh32)
      end if
    else
      if (self%use_bias) then
        call run(self%params(2)%r32, self%params(3)%r32, none)
      else
        call run(self%params(2)%r32, none, none)
      end if
    end if
  contains
    subroutine run(u, b, u2)
      real(real32), intent(in) :: u(*), b(*), u2(*)
      call core_r32(self, n, self%rec_rows(), x, y, self%params(1)%r32, u, b, u2, &
                    ws(o(1) + 1:o(2)), ws(o(2) + 1:o(3)), ws(o(3) + 1:o(4)), &
                    ws(o(4) + 1:o(5)), ws(o(5) + 1:o(6)), ws(o(6) + 1:o(7)), &
                    ws(o(7) + 1:o(8)), ws(o(8) + 1:o(9)), state)
    end subroutine run
  end subroutine rnn_forward_ws_r32

  subroutine core_r32(self, n, nr, x, y, w, u, b, u2, xw, h, g, c, t1, t2, zb, xs, state)
    integer, parameter :: wp = real32
    class(fkb_rnn_t), intent(in) :: self
    integer(int64), intent(in) :: n, nr
    real(wp), intent(in) :: x(self%channels, self%steps * n)
    real(wp), intent(inout) :: y(self%units, *)
    real(wp), intent(in) :: w(*), u(*), b(*), u2(*)
    real(wp), intent(inout) :: xw(self%gates * self%units, self%steps * n)
    real(wp), intent(inout) :: h(self%units, n), g(nr, n), c(self%units, *)
    real(wp), intent(inout) :: t1(self%units, *), t2(self%units, *), zb(*)
    real(wp), intent(inout) :: xs(self%channels, self%steps * n)
    real(wp), intent(inout), optional :: state(self%units, n, *)
    include 'kernels/rnn_forward.inc'
  contains
    include 'kernels/rnn_helpers.inc'
  end subroutine core_r32

  ! ---- float64: the same bodies with wp = real64 ----

  subroutine rnn_forward_r64(self, x, y)
    class(fkb_rnn_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :)
    real(real64), intent(inout), contiguous :: y(:, :)
    real(real64), allocatable :: ws(:)
    allocate(ws(self%scratch * size(x, 2, kind=int64)))
    call self%forward_ws_r64(x, y, ws)
  end subroutine rnn_forward_r64

  subroutine rnn_forward_ws_r64(self, x, y, ws, state)
    class(fkb_rnn_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :)
    real(real64), intent(inout), contiguous :: y(:, :)
    real(real64), intent(inout), contiguous :: ws(:)
    real(real64), intent(inout), contiguous, optional :: state(:)
    real(real64) :: none(1)
    integer(int64) :: n, o(9)
    n = size(x, 2, kind=int64)
    call offsets(self, n, o)
    none = 0
    if (self%kind == RNN_GRU .and. .not. self%reset_after) then
      if (self%use_bias) then
        call run(self%uzr64, self%params(3)%r64, self%uh64)
      else
        call run(self%uzr64, none, self%uh64)
      end if
    else
      if (self%use_bias) then
        call run(self%params(2)%r64, self%params(3)%r64, none)
      else
        call run(self%params(2)%r64, none, none)
      end if
    end if
  contains
    subroutine run(u, b, u2)
      real(real64), intent(in) :: u(*), b(*), u2(*)
      call core_r64(self, n, self%rec_rows(), x, y, self%params(1)%r64, u, b, u2, &
                    ws(o(1) + 1:o(2)), ws(o(2) + 1:o(3)), ws(o(3) + 1:o(4)), &
                    ws(o(4) + 1:o(5)), ws(o(5) + 1:o(6)), ws(o(6) + 1:o(7)), &
                    ws(o(7) + 1:o(8)), ws(o(8) + 1:o(9)), state)
    end subroutine run
  end subroutine rnn_forward_ws_r64

  subroutine core_r64(self, n, nr, x, y, w, u, b, u2, xw, h, g, c, t1, t2, zb, xs, state)
    integer, parameter :: wp = real64
    class(fkb_rnn_t), intent(in) :: self
    integer(int64), intent(in) :: n, nr
    real(wp), intent(in) :: x(self%channels, self%steps * n)
    real(wp), intent(inout) :: y(self%units, *)
    real(wp), intent(in) :: w(*), u(*), b(*), u2(*)
    real(wp), intent(inout) :: xw(self%gates * self%units, self%steps * n)
    real(wp), intent(inout) :: h(self%units, n), g(nr, n), c(self%units, *)
    real(wp), intent(inout) :: t1(self%units, *), t2(self%units, *), zb(*)
    real(wp), intent(inout) :: xs(self%channels, self%steps * n)
    real(wp), intent(inout), optional :: state(self%units, n, *)
    include 'kernels/rnn_forward.inc'
  contains
    include 'kernels/rnn_helpers.inc'
  end subroutine core_r64

  pure subroutine offsets(self, n, o)
    ! Where xw, h, g, c, t1, t2, zb, xs start in the workspace (o(k)+1 .. o(k+1)); unused ones are
    ! empty. c holds lstm's cell state; t1 and t2 gru's r*h and (r*h).U_h (reset_after=0);
    ! zb (lstm, gru) the gate-major pre-activations of one block of samples.
    class(fkb_rnn_t), intent(in) :: self
    integer(int64), intent(in) :: n
    integer(int64), intent(out) :: o(9)
    integer(int64) :: uu, sc, st
    uu = self%units
    sc = 0
    st = 0
    if (self%kind == RNN_LSTM) then
      sc = uu
    else if (self%kind == RNN_GRU .and. .not. self%reset_after) then
      st = uu
    end if
    o(1) = 0
    o(2) = o(1) + self%gates * uu * self%steps * n   ! xw
    o(3) = o(2) + uu * n                               ! h
    o(4) = o(3) + self%rec_rows() * n                  ! g
    o(5) = o(4) + sc * n                               ! c
    o(6) = o(5) + st * n                               ! t1
    o(7) = o(6) + st * n                               ! t2
    o(8) = o(7) + merge(self%rec_rows(), 0_int64, self%kind /= RNN_SIMPLE) * n   ! zb
    o(9) = o(8) + self%channels * self%steps * n       ! xs
  end subroutine offsets

end module fkb_layer_rnn
